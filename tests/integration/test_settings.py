"""Settings are checked at start, and --version says what runs.

Each daemon is started with one unusable value per kind of setting it reads
(a listen port, a peer port, a host, a bind address, an integer, a choice, a
directory, a URL): it must exit at once with status 1 and a config_invalid
line naming the variable and the value and saying what is expected, before it
binds or opens anything. --version must print "<daemon> <version>" (its name,
not the binary's path) and one "<library> <version>" line per library it runs
on. Python 3 standard library only; children are ended by subprocess.run's own
deadline, never by name.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import GATEWAY, USER_SERVICE, binary

ORDER_SERVICE = "services/order/order-service"
PAYMENT_SERVICE = "services/payment/payment-service"
NOTIFICATION_SERVICE = "services/notification/notification-service"

# A refused setting ends the daemon before it does anything slow; the deadline
# is generous for ASan builds and only bounds a daemon that wrongly starts.
EXIT_DEADLINE_S = 15.0

# Unusable values by kind, shared by every daemon that reads the variable.
COMMON_BAD = [
    ("LOG_LEVEL", "verbose"),
    ("RPC_MAX_FRAME_BYTES", "1MiB"),
]
SERVICE_BAD = COMMON_BAD + [
    ("LISTEN_HOST", "localhost"),             # services bind IP literals only
    ("LISTEN_HOST", "0.0.0.0,::"),
    ("SQLITE_SYNCHRONOUS", "sometimes"),
    ("RPC_INCOMPLETE_FRAME_TIMEOUT_MS", "1e3"),
    ("DATA_DIR", "/dev/null/var"),
]
REDIS_BAD = [
    ("REDIS_HOST", "redis,redis-replica"),
    ("REDIS_PORT", "0"),
]

DAEMONS = {
    "gateway": (GATEWAY, "GATEWAY_PORT", COMMON_BAD + [
        ("LISTEN_HOST", "a..b"),
        ("USER_SERVICE_HOST", "127.0.0.1,127.0.0.1"),
        ("ORDER_SERVICE_HOST", "order service"),
        ("NOTIFICATION_SERVICE_HOST", "x" * 254),
        ("PAYMENT_SERVICE_HOST", "10.0.0.256"),
        ("USER_SERVICE_PORT", "0"),
        ("ORDER_SERVICE_PORT", "65536"),
        ("GATEWAY_MAX_BODY_BYTES", "-1"),
        ("RPC_TIMEOUT_MS", "0"),
    ]),
    "user-service": (USER_SERVICE, "USER_SERVICE_PORT", SERVICE_BAD),
    "payment-service": (PAYMENT_SERVICE, "PAYMENT_SERVICE_PORT", SERVICE_BAD + REDIS_BAD + [
        ("EVENTS_QUEUE_MAX", "0"),
    ]),
    "order-service": (ORDER_SERVICE, "ORDER_SERVICE_PORT", SERVICE_BAD + REDIS_BAD + [
        ("USER_SERVICE_HOST", "user service"),
        ("PAYMENT_SERVICE_HOST", "pay..ment"),
        ("USER_SERVICE_PORT", "0"),
        ("PAYMENT_SERVICE_PORT", "http"),
        ("RPC_TIMEOUT_MS", "soon"),
    ]),
    "notification-service": (NOTIFICATION_SERVICE, "NOTIFICATION_SERVICE_PORT",
                             SERVICE_BAD + REDIS_BAD + [
        ("NOTIFY_WEBHOOK_URL", "hooks.example/notify"),
        ("NOTIFY_WEBHOOK_URL", "http://hooks example/notify"),
        ("NOTIFY_WEBHOOK_URL", "ftp://hooks.example/"),
        ("NOTIFY_WEBHOOK_MAX_ATTEMPTS", "0"),
        ("NOTIFY_COMMIT_DELAY_MS", "5000"),
    ]),
}

LIBPROTO_LIBS = ("libuv", "jansson", "hiredis")
EXTRA_LIBS = {
    "gateway": ("libmicrohttpd",),
    "user-service": ("sqlite",),
    "payment-service": ("sqlite",),
    "order-service": ("sqlite",),
    "notification-service": ("sqlite", "libcurl"),
}


def config_invalid_lines(stdout):
    """The msg of every JSON line on stdout whose event is config_invalid."""
    msgs = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict) and o.get("event") == "config_invalid":
            msgs.append(o.get("msg", ""))
    return msgs


class SettingsTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="nestc-settings-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def base_env(self, port_env):
        """Everything valid: the one bad value is the only reason to stop.
        Ports are 0 (ephemeral) so a daemon that wrongly starts takes none
        of someone else's."""
        env = {k: v for k, v in os.environ.items()
               if not re.match(r"(LOG_LEVEL|LISTEN_HOST|DATA_DIR|SQLITE_|RPC_|REDIS_|EVENTS_"
                               r"|NOTIFY_|GATEWAY_|[A-Z]+_SERVICE_(HOST|PORT))", k)}
        env.update({"LISTEN_HOST": "127.0.0.1", port_env: "0",
                    "DATA_DIR": os.path.join(self.tmp, "data")})
        return env

    def run_daemon(self, rel, env, *args):
        try:
            return subprocess.run([binary(rel)] + list(args), env=env, capture_output=True,
                                  timeout=EXIT_DEADLINE_S)
        except subprocess.TimeoutExpired as e:  # run() has killed its child
            self.fail("%s %s was still running after %.0fs (it accepted the setting); "
                      "output: %r" % (rel, " ".join(args), EXIT_DEADLINE_S, e.stdout))

    def test_bad_setting_stops_each_daemon(self):
        for name, (rel, port_env, cases) in DAEMONS.items():
            for var, value in cases:
                with self.subTest(daemon=name, var=var, value=value):
                    env = self.base_env(port_env)
                    env[var] = value
                    p = self.run_daemon(rel, env)
                    self.assertEqual(p.returncode, 1, p)
                    msgs = config_invalid_lines(p.stdout)
                    self.assertEqual(len(msgs), 1, p)
                    self.assertTrue(msgs[0].startswith("%s=%s: expected " % (var, value)), msgs)
                    # refused before anything was opened or bound
                    self.assertNotIn(b'"listening"', p.stdout, p)
                    self.assertFalse(os.path.exists(os.path.join(self.tmp, "data")), p)

    def test_bad_listen_port(self):
        for name, (rel, port_env, _) in DAEMONS.items():
            with self.subTest(daemon=name):
                env = self.base_env(port_env)
                env[port_env] = "3000,3001"
                p = self.run_daemon(rel, env)
                self.assertEqual(p.returncode, 1, p)
                msgs = config_invalid_lines(p.stdout)
                self.assertEqual(msgs, ["%s=3000,3001: expected an integer from 0 to 65535"
                                        % port_env], p)

    def test_webhook_password_not_logged(self):
        rel, port_env, _ = DAEMONS["notification-service"]
        env = self.base_env(port_env)
        env["NOTIFY_WEBHOOK_URL"] = "https://bob:s3cret@hooks example/x"
        p = self.run_daemon(rel, env)
        self.assertEqual(p.returncode, 1, p)
        self.assertNotIn(b"s3cret", p.stdout + p.stderr, p)
        self.assertIn("NOTIFY_WEBHOOK_URL=https://***@hooks example/x",
                      "\n".join(config_invalid_lines(p.stdout)), p)

    def test_version(self):
        for name, (rel, _, _) in DAEMONS.items():
            with self.subTest(daemon=name):
                p = self.run_daemon(rel, dict(os.environ), "--version")
                self.assertEqual(p.returncode, 0, p)
                lines = p.stdout.decode().splitlines()
                self.assertRegex(lines[0], r"^%s \d+\.\d+\.\d+$" % re.escape(name), p)
                self.assertNotIn("/", lines[0], p)  # the name, not the path
                libs = dict(line.split(" ", 1) for line in lines[1:])
                for lib in LIBPROTO_LIBS + EXTRA_LIBS[name]:
                    self.assertIn(lib, libs, p)
                    self.assertRegex(libs[lib], r"^\d+\.\d+(\.\d+)?", p)
                self.assertEqual(len(lines), 1 + len(LIBPROTO_LIBS) + len(EXTRA_LIBS[name]), p)


if __name__ == "__main__":
    unittest.main()
