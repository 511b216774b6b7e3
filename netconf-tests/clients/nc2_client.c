/*
 * A NETCONF controller on libnetconf2 (Debian libnetconf2-dev 2.0.24), built
 * and run by test_libnetconf2.py.
 *
 * It starts with an EMPTY schema search path, so libyang has to build its
 * whole context from what hotleased announces (hello capabilities, YANG
 * library) and serves (get-schema).  libnetconf2 then parses every reply
 * against those schemas: a reply that does not match the YANG fails here.
 *
 * usage: nc2_client HOST PORT USER PASSWORD EMPTY_DIR EDIT_XML CHECK_PATH
 *   EDIT_XML   <config> content for edit-config on candidate, then commit
 *   CHECK_PATH data path (JSON form) that must exist in running afterwards
 *
 * Prints "MODULE name@revision implemented|imported" for every module of
 * the context it built, then one "OK step" line per step.  Exit 0 on
 * success; 1 with a message on the first failure.
 *
 * Notifications (create-subscription + a VRRP state-change) are issue 12's
 * other part: step_subscribe() is the hook for them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libyang/libyang.h>
#include <nc_client.h>

static const char *password;

static char *
auth_password(const char *username, const char *hostname, void *priv)
{
    (void)username; (void)hostname; (void)priv;
    return strdup(password);
}

static int
hostkey_check(const char *hostname, ssh_session session, void *priv)
{
    (void)hostname; (void)session; (void)priv;
    return 0; /* a test daemon with a fresh host key on loopback */
}

static void
print_clb(const struct nc_session *session, NC_VERB_LEVEL level, const char *msg)
{
    (void)session;
    fprintf(stderr, "libnetconf2[%d]: %s\n", level, msg);
}

static void
fail(const char *step, const char *why)
{
    fprintf(stderr, "FAIL %s: %s\n", step, why);
    exit(1);
}

/* Send an rpc and receive its reply; the reply's data (if any) in *op.
 * An <rpc-error> or a reply libnetconf2 cannot parse against the schemas
 * fails the step. */
static void
call(struct nc_session *s, struct nc_rpc *rpc, const char *step, struct lyd_node **op)
{
    uint64_t msgid;
    struct lyd_node *envp = NULL, *data = NULL;
    char *text = NULL;

    if (nc_send_rpc(s, rpc, 5000, &msgid) != NC_MSG_RPC) {
        fail(step, "cannot send the rpc");
    }
    NC_MSG_TYPE t = nc_recv_reply(s, rpc, msgid, 30000, &envp, &data);
    if (t != NC_MSG_REPLY) {
        fail(step, "no valid reply (libnetconf2 could not parse it against the schemas?)");
    }
    if (envp) {
        lyd_print_mem(&text, envp, LYD_XML, LYD_PRINT_WITHSIBLINGS);
        if (text && strstr(text, "rpc-error")) {
            fprintf(stderr, "%s\n", text);
            fail(step, "rpc-error");
        }
        free(text);
        lyd_free_all(envp);
    }
    nc_rpc_free(rpc);
    if (op) {
        *op = data;
    } else {
        lyd_free_all(data);
    }
    printf("OK %s\n", step);
}

/* The data of a get/get-config reply (the anydata <data> under the rpc
 * node libnetconf2 returns), parsed again with STRICT: a node that the
 * schemas do not have fails, instead of becoming an opaque node.  State
 * data is refused for get-config. */
static struct lyd_node *
strict_data(const struct ly_ctx *ctx, struct lyd_node *op, int config_only, const char *step)
{
    struct lyd_node *data = NULL, *any;
    char *xml = NULL;
    uint32_t opts = LYD_PARSE_STRICT | (config_only ? LYD_PARSE_NO_STATE : 0);

    if (!op || lyd_find_path(op, "data", 1, &any) || lyd_any_value_str(any, &xml)) {
        fail(step, "no <data> in the reply");
    }
    if (xml && lyd_parse_data_mem(ctx, xml, LYD_XML, opts,
            LYD_VALIDATE_PRESENT | (config_only ? LYD_VALIDATE_NO_STATE : 0), &data)) {
        fprintf(stderr, "%s\n", xml);
        fail(step, "the reply's data do not parse strictly against the schemas");
    }
    free(xml);
    return data;
}

/* Hook for the notification part of issue 12 (not built yet). */
static void
step_subscribe(struct nc_session *s)
{
    (void)s;
}

int
main(int argc, char **argv)
{
    struct nc_session *s;
    const struct ly_ctx *ctx;
    const struct lys_module *mod;
    struct lyd_node *op = NULL, *data = NULL;
    struct ly_set *set = NULL;
    uint32_t idx = 0;

    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD EMPTY_DIR EDIT_XML CHECK_PATH\n", argv[0]);
        return 2;
    }
    password = argv[4];

    nc_client_init();
    nc_verbosity(getenv("NC2_DEBUG") ? NC_VERB_DEBUG : NC_VERB_WARNING);
    nc_set_print_clb_session(print_clb);
    if (nc_client_set_schema_searchpath(argv[5])) {
        fail("setup", "schema searchpath");
    }
    nc_client_ssh_set_username(argv[3]);
    nc_client_ssh_set_auth_hostkey_check_clb(hostkey_check, NULL);
    nc_client_ssh_set_auth_password_clb(auth_password, NULL);
    nc_client_ssh_set_auth_pref(NC_SSH_AUTH_PUBLICKEY, -1);
    nc_client_ssh_set_auth_pref(NC_SSH_AUTH_INTERACTIVE, -1);
    nc_client_ssh_set_auth_pref(NC_SSH_AUTH_PASSWORD, 1);

    s = nc_connect_ssh(argv[1], (uint16_t)atoi(argv[2]), NULL);
    if (!s) {
        fail("connect", "nc_connect_ssh failed");
    }
    ctx = nc_session_get_ctx(s);
    while ((mod = ly_ctx_get_module_iter(ctx, &idx))) {
        printf("MODULE %s@%s %s\n", mod->name, mod->revision ? mod->revision : "",
               mod->implemented ? "implemented" : "imported");
    }
    printf("OK connect\n");

    call(s, nc_rpc_get(NULL, NC_WD_UNKNOWN, NC_PARAMTYPE_CONST), "get", &op);
    data = strict_data(ctx, op, 0, "get");
    if (lyd_find_xpath(data, "/ietf-netconf-monitoring:netconf-state/schemas/schema", &set) || !set->count) {
        fail("get", "no netconf-state/schemas in the reply");
    }
    ly_set_free(set, NULL);
    if (lyd_find_xpath(data, "/ietf-yang-library:yang-library/module-set/module", &set) || !set->count) {
        fail("get", "no yang-library in the reply");
    }
    ly_set_free(set, NULL);
    lyd_free_all(data);
    lyd_free_all(op);

    call(s, nc_rpc_getconfig(NC_DATASTORE_RUNNING, NULL, NC_WD_UNKNOWN, NC_PARAMTYPE_CONST), "get-config", &op);
    lyd_free_all(strict_data(ctx, op, 1, "get-config"));
    lyd_free_all(op);
    call(s, nc_rpc_lock(NC_DATASTORE_CANDIDATE), "lock", NULL);
    call(s, nc_rpc_edit(NC_DATASTORE_CANDIDATE, NC_RPC_EDIT_DFLTOP_MERGE, NC_RPC_EDIT_TESTOPT_UNKNOWN,
                        NC_RPC_EDIT_ERROPT_UNKNOWN, argv[6], NC_PARAMTYPE_CONST), "edit-config", NULL);
    call(s, nc_rpc_validate(NC_DATASTORE_CANDIDATE, NULL, NC_PARAMTYPE_CONST), "validate", NULL);
    call(s, nc_rpc_commit(0, 0, NULL, NULL, NC_PARAMTYPE_CONST), "commit", NULL);
    call(s, nc_rpc_unlock(NC_DATASTORE_CANDIDATE), "unlock", NULL);
    call(s, nc_rpc_getconfig(NC_DATASTORE_RUNNING, NULL, NC_WD_ALL, NC_PARAMTYPE_CONST), "get-config-after", &op);
    data = strict_data(ctx, op, 1, "get-config-after");
    if (lyd_find_xpath(data, argv[7], &set) || !set->count) {
        fail("get-config-after", "the committed node is not in running");
    }
    ly_set_free(set, NULL);
    lyd_free_all(data);
    lyd_free_all(op);
    step_subscribe(s);

    nc_session_free(s, NULL);
    nc_client_destroy();
    printf("OK done\n");
    return 0;
}
