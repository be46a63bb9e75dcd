"""Button, chime and LED through gpiozero.

Why it looks like this:

* The chime must sound the instant the contact closes, so the press edge turns
  the chime output on *synchronously* inside gpiozero's edge callback (no
  thread hand-off); a small watcher thread turns it off again after the pulse.
* Debounce is done here, in software, because gpiozero's ``bounce_time`` is not
  applied by every pin factory (``MockPin`` ignores it, and some kernels drop
  edges). The rule is leading-edge: the first closing edge rings at once; more
  edges within ``ring_interval_s`` of the last ring are absorbed; a release only
  counts once the contact stayed open for ``debounce_s``. A held button (a
  child leaning on it) rings again once per ``ring_interval_s`` while held.
* A hold longer than ``long_press_s`` toggles privacy mode (once per hold) when
  enabled in the config.
* Everything that can be slow (spool writes, clips) happens in the ring callback's
  consumer, never in the edge callback: the callback only enqueues.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from doorbell.core.config import GpioSection

log = logging.getLogger(__name__)

LedState = Literal["idle", "ringing", "recording", "privacy", "off"]

# (on_time, off_time) for gpiozero's LED.blink; None = steady on; (0, 0) = off.
LED_PATTERNS: dict[str, tuple[float, float] | None] = {
    "idle": None,              # steady: visitors find the button at night
    "ringing": (0.1, 0.1),     # fast flicker: "your ring was heard"
    "recording": (1.0, 0.25),  # slow pulse: honest notice that the camera records
    "privacy": (0.1, 2.9),     # short blip every 3 s: alive, not recording
    "off": (0.0, 0.0),
}
# Buzzer "ding-dong": (on, off) steps in seconds.
BUZZER_TUNE: tuple[tuple[float, float], ...] = ((0.15, 0.1), (0.35, 0.0))
RINGING_LED_S = 2.0


def make_pin_factory(kind: str):
    """Pin factory from config: 'mock' gives gpiozero's MockFactory, 'auto' gpiozero's default."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    return None  # gpiozero picks lgpio/rpigpio/native on a Pi


class DoorbellIO:
    """Owns the button, the chime output and the status LED.

    ``on_ring(ts)`` is called from the GPIO callback thread (keep it to a queue
    put); ``on_long_press(ts)`` likewise from the watcher thread. ``clock`` is
    injectable so tests can drive :meth:`poll` deterministically with
    ``start_thread=False``.
    """

    def __init__(self, cfg: GpioSection, on_ring: Callable[[float], None],
                 on_long_press: Callable[[float], None] | None = None, pin_factory=None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 start_thread: bool = True, tick_s: float = 0.01):
        from gpiozero import LED, Button, Buzzer, DigitalOutputDevice

        self.cfg = cfg
        self._on_ring = on_ring
        self._on_long_press = on_long_press
        self._clock = clock
        self._wall = wall
        self._tick_s = tick_s
        self.factory = pin_factory if pin_factory is not None else make_pin_factory(cfg.pin_factory)
        self._lock = threading.RLock()
        # Button: bounce_time deliberately None; see module docstring.
        # hold_time only bounds how long close() waits for gpiozero's hold thread; holds are timed here.
        self.button = Button(cfg.button_pin, pull_up=cfg.button_pull_up, bounce_time=None, hold_time=0.1,
                             pin_factory=self.factory)
        self.chime = None
        if cfg.chime_pin is not None:
            cls = Buzzer if cfg.chime_kind == "buzzer" else DigitalOutputDevice
            self.chime = cls(cfg.chime_pin, pin_factory=self.factory)
        self.led = LED(cfg.led_pin, pin_factory=self.factory) if cfg.led_pin is not None else None
        # Debounce / hold state (monotonic clock).
        self._last_ring: float | None = None
        self._holding = False
        self._hold_started = 0.0
        self._released_at: float | None = None
        self._long_press_fired = False
        # Chime schedule: list of (due_time, on?) steps.
        self._chime_steps: list[tuple[float, bool]] = []
        # LED state.
        self._privacy = False
        self._recording = False
        self._ringing_until = 0.0
        self._led_state: str | None = None
        self.rings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.button.when_pressed = self._pressed_edge
        self.button.when_released = self._released_edge
        self._apply_led()
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="gpio-watch", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ edges (GPIO callback thread)
    def _pressed_edge(self) -> None:
        now = self._clock()
        with self._lock:
            if self._holding and self._released_at is not None:
                if now - self._released_at < self.cfg.debounce_s:
                    self._released_at = None  # contact bounced back within debounce: same hold
                    return
                self._holding = False  # the release was real; the watcher just had not noticed yet
            self._released_at = None
            if not self._holding:
                self._holding = True
                self._hold_started = now
                self._long_press_fired = False
            self._maybe_ring(now)

    def _released_edge(self) -> None:
        with self._lock:
            if self._holding and self._released_at is None:
                self._released_at = self._clock()

    def _maybe_ring(self, now: float) -> None:
        if self._last_ring is not None and now - self._last_ring < self.cfg.ring_interval_s:
            return
        if self._long_press_fired:
            return  # a hold that toggled privacy does not keep ringing
        self._last_ring = now
        self._chime_start(now)
        self.rings += 1
        self._ringing_until = now + RINGING_LED_S
        self._apply_led()
        try:
            self._on_ring(self._wall())
        except Exception:  # the chime already rang; a consumer bug must not kill the GPIO thread
            log.exception("ring callback failed")
        if self.chime is not None:
            # logged after the work, off the latency path
            log.info("chime on (ring %d, %s)", self.rings, self.cfg.chime_kind)

    def _chime_start(self, now: float) -> None:
        if self.chime is None:
            return
        self.chime.on()  # synchronous: this is the "edge to chime" latency
        if self.cfg.chime_kind == "buzzer":
            steps, t = [], now
            for i, (on_s, off_s) in enumerate(BUZZER_TUNE):
                if i:
                    steps.append((t, True))
                t += on_s
                steps.append((t, False))
                t += off_s
            self._chime_steps = steps
        else:
            self._chime_steps = [(now + self.cfg.chime_pulse_s, False)]

    def press(self) -> None:
        """A simulated press and release (demo, ``doorbell firmware ring``, ``simulate``).

        With gpiozero's MockFactory the mock pin is driven, so the press takes
        the real path (gpiozero edge callback, debounce, chime); on real pins,
        which cannot be driven from software, the edge handlers are called.
        """
        pin = self.button.pin
        if hasattr(pin, "drive_low"):  # gpiozero MockPin
            if self.cfg.button_pull_up:
                pin.drive_low()
                pin.drive_high()
            else:
                pin.drive_high()
                pin.drive_low()
        else:
            self._pressed_edge()
            self._released_edge()

    # ------------------------------------------------------------------ watcher
    def poll(self, now: float | None = None) -> None:
        """Advance timers: chime off, debounced release, held-button repeats, long press, LED."""
        now = self._clock() if now is None else now
        with self._lock:
            while self._chime_steps and self._chime_steps[0][0] <= now:
                _, on = self._chime_steps.pop(0)
                if self.chime is not None:
                    self.chime.on() if on else self.chime.off()
            if self._holding:
                if self._released_at is not None and now - self._released_at >= self.cfg.debounce_s:
                    self._holding = False
                    self._released_at = None
                elif self._released_at is None:
                    lp = self.cfg.long_press_s
                    if lp is not None and not self._long_press_fired and now - self._hold_started >= lp:
                        self._long_press_fired = True
                        log.info("long press (%.1f s): toggling privacy mode", now - self._hold_started)
                        if self._on_long_press is not None:
                            try:
                                self._on_long_press(self._wall())
                            except Exception:
                                log.exception("long-press callback failed")
                    elif self.cfg.ring_interval_s > 0:  # interval 0: every press rings, a hold does not repeat
                        self._maybe_ring(now)
            if self._ringing_until and now >= self._ringing_until:
                self._ringing_until = 0.0
                self._apply_led()

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.poll()
            except Exception:
                log.exception("gpio watcher error")

    # ------------------------------------------------------------------ LED
    def set_privacy(self, enabled: bool) -> None:
        with self._lock:
            self._privacy = enabled
            self._apply_led()

    def set_recording(self, recording: bool) -> None:
        with self._lock:
            self._recording = recording
            self._apply_led()

    @property
    def led_state(self) -> str:
        if self._privacy:
            return "privacy"
        if self._ringing_until:
            return "ringing"
        if self._recording:
            return "recording"
        return "idle"

    def _apply_led(self) -> None:
        state = self.led_state
        if state == self._led_state or self.led is None:
            self._led_state = state
            return
        self._led_state = state
        pattern = LED_PATTERNS[state]
        if pattern is None:
            self.led.on()
        elif pattern == (0.0, 0.0):
            self.led.off()
        else:
            self.led.blink(on_time=pattern[0], off_time=pattern[1], background=True)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the watcher, switch the chime off, release the pins."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._chime_steps.clear()
            for dev in (self.chime, self.led, self.button):
                if dev is not None:
                    try:
                        dev.close()
                    except Exception:
                        log.exception("closing %r", dev)
