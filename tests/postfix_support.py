"""A real Postfix of the test's own, on loopback, for the reliability campaign.

Everything lives in one temporary folder: ``main.cf`` and ``master.cf``, the queue, Postfix's
data, a trustme CA and certificate, a Cyrus sasldb for AUTH, and a Maildir per test domain.
Postfix listens on 127.0.0.1 only, at free ports: one smtpd with STARTTLS (AUTH only after it,
as real submission servers do) and one with implicit TLS (465-style). It relays nothing
(``default_transport = error``) and delivers the test domain to Maildirs through the virtual
agent, where tests count what arrived by Message-ID.

Starting Postfix needs root (the master drops to the ``postfix`` user); without the binary or
root the tests skip with an install hint, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from mailreset import SMTPSettings
from mailreset.testing._smtp import free_port
from tests.rq_support import wait_until

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SASLPASSWD = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
INSTALL_HINT = (
    "Postfix is not installed: `echo 'postfix postfix/main_mailer_type select No "
    "configuration' | sudo debconf-set-selections && sudo apt-get install postfix sasl2-bin "
    "libsasl2-modules` (Debian/Ubuntu); .ci/run installs them on a fresh machine. The tests "
    "start their own instance as root (the master drops to the postfix user)."
)
DOMAIN = "mail.test"
USER = "sender"
PASSWORD = "correct horse battery staple"
REALM = "mail.test"
# "by mail.test (Postfix) with ESMTPSA id 4Fq2Lw0Xk9z1" in the Received header Postfix adds
_QUEUE_ID = re.compile(r"\(Postfix\)[^;]*?\bid ([0-9A-Za-z]+)")

# A minimal master.cf: no chroot (the instance's files live in a temp dir, not under a jail).
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def unavailable_reason() -> str | None:
    """Why a Postfix of our own cannot run here, or None when it can."""
    if not Path(POSTFIX).exists() or not Path(SASLPASSWD).exists():
        return INSTALL_HINT
    if os.geteuid() != 0:
        return "Postfix tests start their own Postfix, which needs root: " + INSTALL_HINT
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user is missing: " + INSTALL_HINT
    return None


class Postfix:
    """One Postfix instance in ``directory``; :meth:`start`, :meth:`stop`, count deliveries.

    Args:
        directory: an empty folder for everything the instance owns (default: a new one
            under the system's temp dir, reachable by the postfix user).
        connection_limit: anvil's per-client connection count limit (None: unlimited).
        message_rate: ``(messages, seconds)``: anvil's per-client message rate limit.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        connection_limit: int | None = None,
        message_rate: tuple[int, int] | None = None,
    ) -> None:
        import trustme  # a test dependency; imported here so the module loads without it

        # Not pytest's tmp_path: its folders are 0700, and Postfix's own processes (user
        # postfix) must reach the queue and the Maildirs.
        self.directory = directory or Path(tempfile.mkdtemp(prefix="mailreset-postfix-"))
        self.config = self.directory / "etc"
        self.queue = self.directory / "queue"
        self.data = self.directory / "data"
        self.maildir_base = self.directory / "mail"
        self.port = free_port()
        self.tls_port = free_port()
        self.connection_limit = connection_limit
        self.message_rate = message_rate
        self._ca = trustme.CA()
        self._uid = pwd.getpwnam("postfix").pw_uid
        self._gid = pwd.getpwnam("postfix").pw_gid
        self._write_files()

    # -- what tests use -----------------------------------------------------------------------

    @property
    def ca_file(self) -> str:
        """A PEM file with the CA that signed the server's certificate."""
        return str(self.config / "ca.pem")

    @property
    def maildir(self) -> Path:
        """The Maildir every address at the test domain is delivered to."""
        return self.maildir_base / DOMAIN / "inbox"

    def settings(self, **overrides: Any) -> SMTPSettings:
        """SMTPSettings for the STARTTLS port with AUTH and our CA; ``overrides`` change any."""
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "starttls": True,
            "username": USER,
            "password": PASSWORD,
            "ca_file": self.ca_file,
            "timeout": 5.0,
            "local_hostname": "client.test",
        }
        options.update(overrides)
        return SMTPSettings(**options)

    def delivered(self) -> Counter[str]:
        """How many copies of each Message-ID reached the Maildir (new/ and cur/)."""
        return Counter({message_id: len(ids) for message_id, ids in self.copies().items()})

    def copies(self) -> dict[str, list[str]]:
        """Each Message-ID in the Maildir with the Postfix queue id of every copy.

        Two copies with one queue id are one accepted message delivered twice by Postfix
        itself (its delivery agent was stopped after writing the file and before reporting
        it done, so the queue manager delivered it again): the client handed it over once.
        Two queue ids are two handovers by the client.
        """
        copies: dict[str, list[str]] = {}
        for folder in ("new", "cur"):
            path = self.maildir / folder
            if not path.is_dir():
                continue
            for item in path.iterdir():
                try:
                    raw = item.read_bytes()
                except FileNotFoundError:  # moved from new/ to cur/ meanwhile
                    continue
                headers = BytesHeaderParser().parsebytes(raw)
                message_id = str(headers.get("Message-ID", "")).strip()
                received = _QUEUE_ID.search(str(headers.get("Received", "")))
                copies.setdefault(message_id, []).append(received[1] if received else "")
        return copies

    def wait_delivered(self, count: int, timeout: float = 60.0) -> Counter[str]:
        """Wait until ``count`` messages are in the Maildir and the queue is empty."""
        try:
            wait_until(
                lambda: sum(self.delivered().values()) >= count and self.queue_empty(),
                timeout,
                f"{count} messages in {self.maildir}",
            )
        except TimeoutError as error:
            raise TimeoutError(f"{error}; {self.state()}") from None
        return self.delivered()

    def state(self) -> str:
        """What was delivered, what each queue holds, and the log's tail: for failure messages."""
        queued = {
            name: (
                sum(_complete(path) for path in (self.queue / name).rglob("*")),
                sum(path.is_file() for path in (self.queue / name).rglob("*")),
            )
            for name in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
            if (self.queue / name).is_dir()
        }
        return (
            f"{sum(self.delivered().values())} delivered, queues (complete, all files) {queued}, "
            f"running={self.running}; log tail:\n{self.log()[-4000:]}"
        )

    def queue_empty(self) -> bool:
        """True when no accepted message waits in Postfix's incoming, active or deferred queues.

        Postfix marks a queue file complete with its owner-execute bit; a file without it is
        what a stop left of a transaction the client saw fail (and sent again): never
        delivered, so not waited for.
        """
        for name in ("incoming", "active", "deferred", "maildrop"):
            folder = self.queue / name
            if folder.is_dir() and any(_complete(path) for path in folder.rglob("*")):
                return False
        return True

    def log(self) -> str:
        """Postfix's own log of this instance."""
        path = self.directory / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the master process of this instance runs."""
        pid = self._master_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> Postfix:
        """Start the instance; return once both smtpd ports accept connections (10 s)."""
        self._postfix("start")
        wait_until(self._listening, 10.0, f"Postfix listening on {self.port}/{self.tls_port}")
        return self

    def stop(self) -> None:
        """Stop the instance (connections are closed) and wait until its ports are free."""
        pid = self._master_pid()
        if pid is None:
            return
        # `postfix stop` only signals the master; "stop" is its graceful TERM.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not self.running, 20.0, "the Postfix master exiting")
        wait_until(lambda: not self._listening(any_port=True), 10.0, "Postfix ports closing")

    def stop_for(self, seconds: float) -> None:
        """Stop, stay down ``seconds``, start again (blocks; run it in a thread mid-burst)."""
        self.stop()
        time.sleep(seconds)
        self.start()

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def remove(self) -> None:
        """Stop the instance and delete its folder."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- inside -------------------------------------------------------------------------------

    def _postfix(self, command: str) -> None:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.config), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"postfix {command} failed ({result.returncode}):\n{result.stdout}"
                f"{result.stderr}\n{self.log()[-3000:]}"
            )

    def _master_pid(self) -> int | None:
        path = self.queue / "pid" / "master.pid"
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _listening(self, *, any_port: bool = False) -> bool:
        import socket

        results = []
        for port in (self.port, self.tls_port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    results.append(True)
            except OSError:
                results.append(False)
        return any(results) if any_port else all(results)

    def _write_files(self) -> None:
        for folder in (self.config, self.queue, self.data, self.maildir_base):
            folder.mkdir(parents=True)
        # Postfix insists on root-owned, not group/other-writable config and queue roots.
        for folder in (self.directory, self.config, self.queue):
            os.chmod(folder, 0o755)
        os.chown(self.data, self._uid, self._gid)
        os.chown(self.maildir_base, self._uid, self._gid)
        # Postfix's commands write warnings to maillog_file as the mail owner (postsuper at a
        # start after an outage, say); a log file root made first would refuse them.
        log_file = self.directory / "postfix.log"
        log_file.touch(mode=0o640)
        os.chown(log_file, self._uid, self._gid)
        certificate = self._ca.issue_cert("localhost", "127.0.0.1")
        self._ca.cert_pem.write_to_path(self.ca_file)
        certificate.private_key_and_cert_chain_pem.write_to_path(str(self.config / "server.pem"))
        (self.config / "vmailbox").write_text(f"@{DOMAIN} {DOMAIN}/inbox/\n")
        sasldb = self.config / "sasldb2"
        subprocess.run(
            [SASLPASSWD, "-f", str(sasldb), "-c", "-p", "-u", REALM, USER],
            input=PASSWORD.encode(),
            check=True,
            timeout=30,
        )
        os.chown(sasldb, 0, self._gid)
        os.chmod(sasldb, 0o640)
        (self.config / "sasl").mkdir()
        (self.config / "sasl" / "smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {sasldb}\n"
            "mech_list: PLAIN LOGIN\n"
        )
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "myhostname": f"mx.{DOMAIN}",
            "mydomain": DOMAIN,
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "default_transport": "error:no relaying from this test server",
            "relay_transport": "error:no relaying from this test server",
            "local_recipient_maps": "",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": str(self.maildir_base),
            "virtual_mailbox_maps": f"texthash:{self.config / 'vmailbox'}",
            "virtual_uid_maps": f"static:{self._uid}",
            "virtual_gid_maps": f"static:{self._gid}",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_tls_chain_files": str(self.config / "server.pem"),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "smtpd_sasl_local_domain": REALM,
            "cyrus_sasl_config_path": str(self.config / "sasl"),
            # No tarpit: a refused AUTH is answered at once, so the tests stay fast.
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "200",
            # Loopback is a normal client here: anvil's limits apply to it too.
            "smtpd_client_event_limit_exceptions": "",
            "maillog_file": str(self.directory / "postfix.log"),
            "maillog_file_prefixes": str(self.directory),
            "biff": "no",
            # A message whose delivery a stop interrupted is deferred; Postfix's defaults would
            # retry it after 5 minutes, longer than any test waits. A real server's timers do
            # not change what our client is told, only when the Maildir sees the message.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtputf8_enable": "yes",
            "alias_maps": "",
            "alias_database": "",
            "import_environment": "MAIL_CONFIG MAIL_DEBUG TZ LANG=C",
        }
        if self.connection_limit is not None:
            main["smtpd_client_connection_count_limit"] = str(self.connection_limit)
        if self.message_rate is not None:
            count, seconds = self.message_rate
            main["smtpd_client_message_rate_limit"] = str(count)
            main["anvil_rate_time_unit"] = f"{seconds}s"
        (self.config / "main.cf").write_text(
            "".join(f"{name} = {value}\n" for name, value in main.items())
        )
        inet = (
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
            f"127.0.0.1:{self.tls_port} inet n - n - - smtpd\n"
            "  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt\n"
        )
        (self.config / "master.cf").write_text(inet + _SERVICES)


def _complete(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:  # moved on by the queue manager meanwhile
        return False
    return stat.S_ISREG(mode) and bool(mode & stat.S_IXUSR)
