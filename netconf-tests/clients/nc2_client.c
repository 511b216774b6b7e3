/*
 * A NETCONF controller on libnetconf2 (Debian libnetconf2-dev 2.0.24), built
 * and run by test_libnetconf2.py.
 *
 * It starts with an EMPTY schema search path, so libyang has to build its
 * whole context from what hotleased announces (hello capabilities, YANG
 * library) and serves (get-schema).  libnetconf2 then parses every reply
 * against those schemas: a reply that does not match the YANG fails here.
 *
 * usage: nc2_client HOST PORT USER PASSWORD EMPTY_DIR EDIT_XML CHECK_PATH SUB_EDIT_XML VRID
 *   EDIT_XML     <config> content for edit-config on candidate, then commit
 *   CHECK_PATH   data path (JSON form) that must exist in running afterwards
 *   SUB_EDIT_XML committed once subscribed: it must make VRRP group VRID
 *                change state (e.g. create it on a running VRRP runtime)
 *
 * Prints "MODULE name@revision implemented|imported" for every module of
 * the context it built, then one "OK step" line per step, and a "NOTIF"
 * line for every notification received.  Exit 0 on success; 1 with a
 * message on the first failure.
 *
 * Notifications: create-subscription on the NETCONF stream, then the
 * SUB_EDIT_XML commit; every notification libnetconf2 receives (parsed
 * against the context) is printed back to XML and parsed again by libyang
 * as a YANG notification and validated, and must have no opaque node,
 * until the VRRP state-change of group VRID and the commit's
 * netconf-config-change arrived.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libyang/libyang.h>
#include <nc_client.h>

static const char *password;
/* libnetconf2 errors once subscribed: its dispatch thread drops a
 * notification that does not parse against the schemas, with only an
 * error message, so the message is what fails the client */
static int subscribed, errors_since;

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
    if (level == NC_VERB_ERROR && __atomic_load_n(&subscribed, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&errors_since, 1, __ATOMIC_SEQ_CST);
    }
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
    NC_MSG_TYPE t;
    /* a notification read here instead of the reply is lost to
     * nc_recv_notif(): once subscribed, the dispatch thread reads them */
    while ((t = nc_recv_reply(s, rpc, msgid, 30000, &envp, &data)) == NC_MSG_NOTIF) {
    }
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

/* The value of leaf `name` directly under `node`, or "". */
static const char *
leaf(const struct lyd_node *node, const char *name)
{
    struct lyd_node *l;

    if (lyd_find_path(node, name, 0, &l)) {
        return "";
    }
    return lyd_get_value(l);
}

/* A notification received: parsed once more by libyang from its XML as a
 * YANG notification of the context, validated (against `data`, the
 * server's data, for what it refers to: RFC 6470 edit targets are
 * instance-identifiers that require their instance), with no opaque node
 * (one the schemas do not have).  Returns the notification's own node. */
static struct lyd_node *
strict_notif(const struct ly_ctx *ctx, const char *xml, const struct lyd_node *data)
{
    struct lyd_node *tree = NULL, *n = NULL, *elem;
    struct ly_in *in = NULL;

    if (ly_in_new_memory(xml, &in) || lyd_parse_op(ctx, NULL, in, LYD_XML, LYD_TYPE_NOTIF_YANG, &tree, &n)) {
        fprintf(stderr, "%s\n%s\n", xml, ly_errmsg(ctx));
        fail("notification", "the notification does not parse against the schemas");
    }
    ly_in_free(in, 0);
    if (lyd_validate_op(tree, data, LYD_TYPE_NOTIF_YANG, NULL)) {
        fprintf(stderr, "%s\n%s\n", xml, ly_errmsg(ctx));
        fail("notification", "the notification is not valid against the schemas");
    }
    LYD_TREE_DFS_BEGIN(tree, elem) {
        if (!elem->schema) {
            fprintf(stderr, "%s\n", xml);
            fail("notification", "opaque node (not in the schemas) in the notification");
        }
        LYD_TREE_DFS_END(tree, elem);
    }
    return n;
}

/* Notifications as libnetconf2's dispatch thread received them (parsed
 * against the context), printed back to XML for the main thread. */
static pthread_mutex_t notif_lock = PTHREAD_MUTEX_INITIALIZER;
static char *notifs[256];
static int notif_count;

static void
notif_clb(struct nc_session *s, const struct lyd_node *envp, const struct lyd_node *op)
{
    char *xml = NULL;

    (void)s; (void)envp;
    if (!op || lyd_print_mem(&xml, op, LYD_XML, 0) || !xml) {
        fail("notification", "libnetconf2 gave a notification with no content");
    }
    pthread_mutex_lock(&notif_lock);
    if (notif_count < (int)(sizeof notifs / sizeof *notifs)) {
        notifs[notif_count++] = xml;
    } else {
        free(xml);
    }
    pthread_mutex_unlock(&notif_lock);
}

/* create-subscription with a notification dispatch thread (the way a
 * libnetconf2 controller interleaves rpcs and notifications), then the
 * commit that makes VRRP group `vrid` change state, then every
 * notification until that state-change and the commit's config-change
 * (in either order) came, each checked strictly. */
static void
step_subscribe(struct nc_session *s, const char *edit, const char *vrid)
{
    const struct ly_ctx *ctx = nc_session_get_ctx(s);
    struct lyd_node *n, *reply = NULL, *data;
    time_t deadline;
    int found = 0, changed = 0, done = 0;

    __atomic_store_n(&subscribed, 1, __ATOMIC_SEQ_CST);
    call(s, nc_rpc_subscribe(NULL, NULL, NULL, NULL, NC_PARAMTYPE_CONST), "create-subscription", NULL);
    if (nc_recv_notif_dispatch(s, notif_clb)) {
        fail("create-subscription", "cannot start the notification thread");
    }
    call(s, nc_rpc_edit(NC_DATASTORE_CANDIDATE, NC_RPC_EDIT_DFLTOP_MERGE, NC_RPC_EDIT_TESTOPT_UNKNOWN,
                        NC_RPC_EDIT_ERROPT_UNKNOWN, edit, NC_PARAMTYPE_CONST), "edit-config-vrrp", NULL);
    call(s, nc_rpc_commit(0, 0, NULL, NULL, NC_PARAMTYPE_CONST), "commit-vrrp", NULL);
    /* what the notifications refer to */
    call(s, nc_rpc_get(NULL, NC_WD_UNKNOWN, NC_PARAMTYPE_CONST), "get-after-subscribe", &reply);
    data = strict_data(ctx, reply, 0, "get-after-subscribe");
    lyd_free_all(reply);
    deadline = time(NULL) + 30;
    while (!found || !changed) {
        char *xml = NULL;

        if (__atomic_load_n(&errors_since, __ATOMIC_SEQ_CST)) {
            fail("notification", "libnetconf2 refused a message (a notification that does not parse against the schemas?)");
        }
        pthread_mutex_lock(&notif_lock);
        if (done < notif_count) {
            xml = notifs[done++];
        }
        pthread_mutex_unlock(&notif_lock);
        if (!xml) {
            if (time(NULL) > deadline) {
                fail("notification", "no VRRP state-change of the group or no config-change within 30 s");
            }
            usleep(20000);
            continue;
        }
        n = strict_notif(ctx, xml, data);
        printf("NOTIF %s:%s", n->schema->module->name, LYD_NAME(n));
        if (!strcmp(n->schema->module->name, "hotlease-vrrp") && !strcmp(LYD_NAME(n), "state-change")) {
            printf(" %s %s %s %s %s", leaf(n, "interface"), leaf(n, "vrid"), leaf(n, "old-state"),
                   leaf(n, "new-state"), leaf(n, "reason"));
            found |= !strcmp(leaf(n, "vrid"), vrid);
        }
        changed |= !strcmp(LYD_NAME(n), "netconf-config-change");
        printf("\n");
        lyd_free_all(n);
        free(xml);
    }
    lyd_free_all(data);
    if (__atomic_load_n(&errors_since, __ATOMIC_SEQ_CST)) {
        fail("notification", "libnetconf2 refused a message (a notification that does not parse against the schemas?)");
    }
    printf("OK notification\n");
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

    /* without SUB_EDIT_XML and VRID: no subscription (a daemon without VRRP) */
    if (argc != 10 && argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD EMPTY_DIR EDIT_XML CHECK_PATH [SUB_EDIT_XML VRID]\n", argv[0]);
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
    if (argc == 10) {
        step_subscribe(s, argv[8], argv[9]);
    }

    nc_session_free(s, NULL);
    nc_client_destroy();
    printf("OK done\n");
    return 0;
}
