"""Ctrl-C during a long job (nstjax.runtime.Interrupts): never lost, even in a garbage-collection callback.

JAX registers a ``gc.callbacks`` function; Python prints and drops any exception raised inside one, so a
SIGINT whose handler happened to run there used to vanish (a real `nstjax recreate` ran to the end after
Ctrl-C, tests/test_recreate.py). The signal is sent to this process; its Python handler runs at the next
bytecode of the main thread, which these tests arrange to be inside or outside a gc callback.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

import pytest

from nstjax.runtime import Interrupts

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def python_default_handler():
    """Python's own SIGINT handler for each test: a process started in the background (CI's `nohup ... &`)
    inherits SIGINT ignored, which would hide what these tests look at."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def sigint_inside_a_gc_callback() -> None:
    """Run one collection whose callback receives a SIGINT (its handler runs in the callback's frame)."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # bytecodes: the pending handler runs here
                pass

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert fired


def test_python_alone_loses_a_ctrl_c_raised_in_a_gc_callback() -> None:
    # The failure mode: with the default handler the KeyboardInterrupt raised in the callback goes to
    # sys.unraisablehook (printed, then dropped) and the code around the collection carries on.
    dropped = []
    previous, sys.unraisablehook = sys.unraisablehook, lambda unraisable: dropped.append(unraisable.exc_type)
    try:
        sigint_inside_a_gc_callback()
    finally:
        sys.unraisablehook = previous
    assert dropped == [KeyboardInterrupt]


def test_immediate_interrupts_raise_at_once_and_are_kept_from_gc_callbacks() -> None:
    with Interrupts(immediate=True) as interrupts:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        assert interrupts.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    with Interrupts(immediate=True) as interrupts:
        sigint_inside_a_gc_callback()  # not raised inside the callback ...
        assert interrupts.requested
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # ... but at the job's next check


def test_deferred_interrupts_stop_at_the_next_check_and_a_second_one_at_once() -> None:
    with Interrupts(immediate=False) as interrupts:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        assert interrupts.requested
        interrupts.check()  # training stops after its step by itself: nothing raised
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass


def test_an_ignored_sigint_stays_ignored() -> None:
    # A job started with SIGINT ignored (nohup, `&` in a script) must not become interruptible.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with Interrupts(immediate=True) as interrupts:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        assert not interrupts.requested
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
