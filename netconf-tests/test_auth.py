"""SSH login: password and public key, and their refusals."""

import threading

import paramiko
import pytest
from ncclient.transport.errors import AuthenticationError, SSHError

from conftest import KEY_USER, PASSWORD, USER

REFUSED = (AuthenticationError, SSHError, paramiko.AuthenticationException, paramiko.SSHException)


def test_password_login(daemon):
    m = daemon.connect(user=USER, password=PASSWORD)
    assert m.connected
    m.get_config("running")


def test_key_login(daemon, creds):
    m = daemon.connect(user=USER, password=None, key=creds["admin_key"])
    assert m.connected
    m.get_config("running")


def test_key_only_user_login(daemon, creds):
    m = daemon.connect(user=KEY_USER, password=None, key=creds["keyonly_key"])
    m.get_config("running")


def test_wrong_password_refused(daemon):
    with pytest.raises(REFUSED):
        daemon.connect(user=USER, password="not-the-password")
    # and the daemon still serves the right one
    daemon.connect().get_config("running")


def test_empty_password_refused(daemon):
    with pytest.raises(REFUSED):
        daemon.connect(user=USER, password="")


def test_unknown_user_refused(daemon):
    with pytest.raises(REFUSED):
        daemon.connect(user="mallory", password=PASSWORD)


def test_unlisted_key_refused(daemon, creds):
    with pytest.raises(REFUSED):
        daemon.connect(user=USER, password=None, key=creds["stranger_key"])


def test_other_users_key_refused(daemon, creds):
    # keyonly's key is authorized for keyonly, not for admin
    with pytest.raises(REFUSED):
        daemon.connect(user=USER, password=None, key=creds["keyonly_key"])


def test_key_user_has_no_password(daemon):
    # a user without password-hash cannot log in with any password
    with pytest.raises(REFUSED):
        daemon.connect(user=KEY_USER, password=PASSWORD)
    with pytest.raises(REFUSED):
        daemon.connect(user=KEY_USER, password="")


def test_auth_methods_offered(daemon):
    """The server offers publickey and password (RFC 4252 'none' probe)."""
    t = paramiko.Transport(("127.0.0.1", daemon.port))
    try:
        t.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as ei:
            t.auth_none(USER)
        assert {"publickey", "password"} <= set(ei.value.allowed_types)
    finally:
        t.close()


def refused_request(t, request):
    """Open a session channel and make *request* on it; True when the server
    answers SSH_MSG_CHANNEL_FAILURE (RFC 4254 §6.5: a request with want-reply
    must be answered)."""
    result = {}

    def run():
        ch = t.open_session(timeout=10)
        try:
            request(ch)
            result["ok"] = False
        except paramiko.SSHException:
            result["ok"] = True
        finally:
            ch.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(10)
    assert not th.is_alive(), "no reply to the channel request"
    return result["ok"]


def test_only_netconf_subsystem(daemon):
    """Another subsystem is not a way in."""
    t = paramiko.Transport(("127.0.0.1", daemon.port))
    try:
        t.connect(username=USER, password=PASSWORD)
        assert refused_request(t, lambda ch: ch.invoke_subsystem("sftp"))
    finally:
        t.close()
    daemon.connect().get_config("running")


def test_no_shell_or_exec(daemon):
    t = paramiko.Transport(("127.0.0.1", daemon.port))
    try:
        t.connect(username=USER, password=PASSWORD)
        assert refused_request(t, lambda ch: ch.exec_command("id"))
        assert refused_request(t, lambda ch: ch.invoke_shell())
    finally:
        t.close()
    daemon.connect().get_config("running")
