"""Stopping a broker process the tests started: the part of the lifecycle that Chronik's
`Broker` (conftest.py) and Apache Kafka's `KafkaNode` (reference/kafka.py) share.

A class using `Stoppable` has `proc` (a subprocess.Popen, or None before its first start),
`name` and `stderr_tail()` (`pid`, `alive()` and `cleanup()` come with it), and sets `error` (the exception it raises) and
`clean_exits` (the exit codes a SIGTERM may end with) and `shutdown_timeout_s`.
"""

from __future__ import annotations

import signal
import subprocess


class Stoppable:
    error: type[Exception] = AssertionError
    clean_exits: tuple[int, ...] = (0,)
    shutdown_timeout_s: float = 30.0

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        """Kills what is still running (fixture teardown)."""
        if self.alive():
            self.kill()

    def kill(self) -> int | None:
        """SIGKILL (a crash): no chance to flush or clean up. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=self.shutdown_timeout_s)

    def signal_and_wait(self, sig: int, timeout_s: float | None = None) -> int:
        timeout_s = self.shutdown_timeout_s if timeout_s is None else timeout_s
        assert self.alive(), f"{self.name} is not running (exit code {self.proc and self.proc.poll()})"
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.error(f"{self.name} did not exit within {timeout_s}s of {signal.Signals(sig).name}\n"
                             f"stderr tail:\n{self.stderr_tail()}")

    def terminate(self, timeout_s: float | None = None) -> None:
        """SIGTERM: a graceful shutdown, which must end with one of `clean_exits`."""
        code = self.signal_and_wait(signal.SIGTERM, timeout_s)
        if code not in self.clean_exits:
            raise self.error(f"{self.name} exited with {code} after SIGTERM, expected one of "
                             f"{self.clean_exits}\nstderr tail:\n{self.stderr_tail()}")

    def rss_bytes(self) -> int:
        """The process's resident memory now (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise self.error(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

