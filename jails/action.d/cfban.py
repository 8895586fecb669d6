"""fail2ban Python action: ban at Cloudflare through cfban, without a process per ban.

Use it in a jail (fail2ban loads it into fail2ban-server itself):

    action = cfban.py[state_dir="/var/lib/cfban", cfban="/usr/local/bin/cfban"]

Options: ``state_dir`` (cfban's state directory, default /var/lib/cfban), ``cfban`` (the cfban
command, default ``cfban``), ``config`` (cfban's configuration file, optional).

A ban or unban is appended as one line to a journal file in ``<state_dir>/spool/`` (flushed
to disk before fail2ban is told it succeeded: one disk flush per request) and a cfban process
is woken to deliver it; a burst of bans becomes a few batched Cloudflare requests. fail2ban's stop and restart cost no API call: the
flush keeps bans at Cloudflare (cfban lifts each one at its own expiry) and restored tickets
are not banned again. The address checks (Cloudflare's ranges, ignoreip, private addresses)
happen when cfban takes the request; a refused address is logged by cfban.

This file only uses the standard library and fail2ban, because fail2ban-server's Python need
not have cfban installed. The request format is described in cfban's ``cfban/intake/spool.py``.
"""

import fcntl
import itertools
import json
import os
import subprocess
import threading
import time

from fail2ban.server.actions import ActionBase

_SEQUENCE = itertools.count()
_KICK_INTERVAL = 0.3
_ERRORS = ".deliverer.stderr"  # the last deliverer's stderr, for fail2ban's log


class CfbanAction(ActionBase):
    """Writes ban/unban requests to cfban's spool and keeps a cfban deliverer running."""

    def __init__(self, jail, name, state_dir="/var/lib/cfban", cfban="cfban", config=""):
        super().__init__(jail, name)
        self.norestored = True
        self.spool = os.path.join(state_dir, "spool")
        self.command = cfban.split() + (["--config", config] if config else [])
        self._child = None
        self._kicked = 0.0
        self._lock = threading.Lock()  # `fail2ban-client set JAIL banip` runs in another thread
        self._journal = None  # (fd, path, inode) of the journal this action appends to

    # fail2ban's hooks ---------------------------------------------------------------------

    def start(self):
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        self._kick(force=True)  # lifts bans that ended while fail2ban was down

    def stop(self):
        with self._lock:
            self._close()

    def flush(self):
        """Keep every ban at Cloudflare when fail2ban stops; cfban expires them itself."""
        return True

    def ban(self, aInfo):
        bantime = int(aInfo["bantime"])
        expires = None if bantime < 0 else float(aInfo["time"]) + bantime
        self._write("ban", str(aInfo["ip"]), expires)
        self._kick()

    def reban(self, aInfo):
        self.ban(aInfo)

    def unban(self, aInfo):
        self._write("unban", str(aInfo["ip"]), None)
        self._kick()

    # helpers ------------------------------------------------------------------------------

    def _write(self, op, ip, expires_at):
        data = {"v": 1, "op": op, "ip": ip, "jail": self._jail.name,
                "expires_at": expires_at, "time": time.time()}
        line = json.dumps(data).encode() + b"\n"
        with self._lock:
            if self._journal is not None:
                fd, path, inode = self._journal
                os.write(fd, line)
                os.fdatasync(fd)
                try:
                    if os.stat(path).st_ino == inode:
                        return
                except FileNotFoundError:
                    pass
                # cfban took the journal meanwhile and may have read it before this line:
                # write the line again, to a new journal (a repeated request is harmless)
                self._close()
            self._start_journal(line)

    def _start_journal(self, line):
        """A new journal that appears with its first line already on disk."""
        name = "%020d-%d-%06d" % (time.time_ns(), os.getpid(), next(_SEQUENCE))
        tmp = os.path.join(self.spool, "." + name + ".tmp")
        path = os.path.join(self.spool, name + ".jsonl")
        os.makedirs(self.spool, mode=0o700, exist_ok=True)  # also if the state dir was wiped
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fdatasync(fd)
            os.rename(tmp, path)
            dir_fd = os.open(self.spool, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            os.close(fd)
            raise
        self._journal = (fd, path, os.fstat(fd).st_ino)

    def _close(self):
        if self._journal is not None:
            os.close(self._journal[0])
            self._journal = None

    def _kick(self, force=False):
        """Make sure a cfban deliverer runs; it exits by itself once the spool stays empty.

        A running deliverer holds ``spool/.deliverer.lock`` and looks at the spool once more
        after releasing it, so a request written before this check is never left behind.
        """
        child = self._child
        if child is not None and child.poll() not in (None, 0):
            self._report_failure(child.returncode)
        if child is not None and child.poll() is None and not force:
            if time.monotonic() - self._kicked < _KICK_INTERVAL:
                return  # just started: it will take the lock and see the request
        if not force and self._deliverer_running():
            return
        self._kicked = time.monotonic()
        try:
            with open(os.path.join(self.spool, _ERRORS), "wb") as errors:
                self._child = subprocess.Popen(
                    self.command + ["deliver", "--linger", "5"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            self._logSys.error("cannot start %s: %s", self.command[0], exc)

    def _report_failure(self, code):
        """A deliverer that failed (a bad configuration: exit 78) says why in fail2ban's log;
        its own log (``<state_dir>/deliverer.log``) has the rest."""
        try:
            with open(os.path.join(self.spool, _ERRORS), "rb") as errors:
                lines = errors.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            lines = []
        self._logSys.error(
            "cfban deliverer exited with %d: %s", code, lines[-1] if lines else "(no message)"
        )
        self._child = None

    def _deliverer_running(self):
        fd = os.open(os.path.join(self.spool, ".deliverer.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases the lock if it was taken
        return False


Action = CfbanAction
