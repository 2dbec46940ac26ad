"""The idle kernel's interrupt reaches replies streaming in threads, and nothing else."""

from __future__ import annotations

import signal
import threading
import types

from nb_claude import _interrupts


def fake_kernel(saved: object = signal.SIG_IGN) -> types.SimpleNamespace:
    return types.SimpleNamespace(saved_sigint_handler=saved, post_handler_hook=lambda: None)


def test_a_registered_stop_runs_on_interrupt_until_forgotten() -> None:
    kernel, stopped = fake_kernel(), threading.Event()
    forget = _interrupts.on_interrupt(stopped.set, kernel)
    assert kernel.saved_sigint_handler is _interrupts._on_sigint
    kernel.saved_sigint_handler(signal.SIGINT, None)
    assert stopped.wait(2)
    forget()
    stopped.clear()
    kernel.saved_sigint_handler(signal.SIGINT, None)  # nothing registered: ignored, as before
    assert not stopped.wait(0.2)


def test_someone_elses_handler_and_kernels_without_hooks_are_left_alone() -> None:
    def theirs(signum: int, frame: object) -> None:
        pass

    kernel = fake_kernel(theirs)
    assert _interrupts.install(kernel) is False and kernel.saved_sigint_handler is theirs
    assert _interrupts.install(types.SimpleNamespace()) is False
    assert _interrupts.install(None) is False
    forget = _interrupts.on_interrupt(lambda: None, None)  # terminal IPython: no kernel
    forget()


def test_one_failing_stop_does_not_keep_the_others_streaming() -> None:
    kernel, stopped = fake_kernel(), threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    forgets = [_interrupts.on_interrupt(broken, kernel),
               _interrupts.on_interrupt(stopped.set, kernel)]
    try:
        _interrupts._on_sigint(signal.SIGINT, None)
        assert stopped.wait(2)
    finally:
        for forget in forgets:
            forget()
