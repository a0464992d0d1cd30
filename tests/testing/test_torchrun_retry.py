"""The torchrun helper retries only a rank's native crash, never a failure of the code under test."""

from tests.torchrun import crashed_natively

SUMMARY = """Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_02:50:28
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 28643)
  traceback : {trace}
"""


def test_a_segfault_bus_error_or_abort_is_a_native_crash():
    for number, name in ((11, "SIGSEGV"), (7, "SIGBUS"), (6, "SIGABRT")):
        text = SUMMARY.format(code=-number, trace=f"Signal {number} ({name}) received by PID 28643")
        assert crashed_natively(text), name


def test_a_python_error_a_sigterm_or_a_timeout_is_not():
    python_error = SUMMARY.format(code=1, trace="To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html")
    sigterm = SUMMARY.format(code=-15, trace="Signal 15 (SIGTERM) received by PID 28642")
    assert not crashed_natively(python_error)
    assert not crashed_natively(sigterm)
    assert not crashed_natively("AssertionError: 2-process results differ from the reference")
