"""Button, chime and LED through gpiozero's MockFactory (real gpiozero code, mock pins).

MockPin ignores ``bounce_time``, so these tests show the firmware's own
debounce holds. A fake clock drives :meth:`DoorbellIO.poll` so timing is exact.
"""
from __future__ import annotations

import pytest

from doorbell.core.config import GpioSection
from firmware.gpio import LED_PATTERNS, DoorbellIO


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_io(mock_pins, **over):
    cfg = GpioSection(**{"pin_factory": "mock", "ring_interval_s": 3.0, "debounce_s": 0.03,
                         "chime_pulse_s": 0.25, "long_press_s": None, **over})
    clock = Clock()
    rings: list[float] = []
    toggles: list[float] = []
    io = DoorbellIO(cfg, on_ring=rings.append, on_long_press=toggles.append, pin_factory=mock_pins,
                    clock=clock, wall=clock, start_thread=False)
    return io, clock, rings, toggles


def test_press_rings_chime_at_once_then_pulse_ends(mock_pins):
    io, clock, rings, _ = make_io(mock_pins)
    button, chime = mock_pins.pin(17), mock_pins.pin(27)
    assert chime.state is False or chime.state == 0
    button.drive_low()                      # the press edge
    assert chime.state                      # on synchronously inside the edge callback
    assert rings == [1000.0]
    button.drive_high()
    clock.t += 0.2
    io.poll()
    assert chime.state                      # still inside the 0.25 s pulse
    clock.t += 0.1
    io.poll()
    assert not chime.state                  # pulse over
    io.close()


def test_bounce_storm_gives_one_ring(mock_pins):
    io, clock, rings, _ = make_io(mock_pins)
    button = mock_pins.pin(17)
    for _ in range(50):                     # 50 bounces, 1 ms apart
        button.drive_low()
        clock.t += 0.0005
        io.poll()
        button.drive_high()
        clock.t += 0.0005
        io.poll()
    clock.t += 0.5
    io.poll()
    assert len(rings) == 1
    assert io.rings == 1
    io.close()


def test_held_button_rings_once_per_interval(mock_pins):
    io, clock, rings, _ = make_io(mock_pins, ring_interval_s=2.0)
    button = mock_pins.pin(17)
    button.drive_low()
    for _ in range(700):                    # hold for 7 s, watcher ticking every 10 ms
        clock.t += 0.01
        io.poll()
    button.drive_high()
    clock.t += 1.0
    io.poll()
    assert [round(t - 1000.0, 1) for t in rings] == [0.0, 2.0, 4.0, 6.0]
    io.close()


def test_separate_presses_respect_the_interval(mock_pins):
    io, clock, rings, _ = make_io(mock_pins, ring_interval_s=3.0)
    button = mock_pins.pin(17)
    for dt in (0.0, 1.0, 1.0, 1.5):         # presses at 0, 1, 2, 3.5 s
        clock.t += dt
        button.drive_low()
        clock.t += 0.05
        io.poll()
        button.drive_high()
        clock.t += 0.05
        io.poll()
        clock.t -= 0.1
    assert len(rings) == 2                  # 0 s and 3.5 s
    io.close()


def test_long_press_toggles_privacy_once_and_stops_ringing(mock_pins):
    io, clock, rings, toggles = make_io(mock_pins, long_press_s=5.0, ring_interval_s=2.0)
    button = mock_pins.pin(17)
    button.drive_low()
    for _ in range(900):                    # hold 9 s
        clock.t += 0.01
        io.poll()
    button.drive_high()
    assert len(toggles) == 1
    assert round(toggles[0] - 1000.0, 1) == 5.0
    assert [round(t - 1000.0, 1) for t in rings] == [0.0, 2.0, 4.0]  # no repeats after the toggle
    io.close()


def test_led_states(mock_pins):
    io, clock, _, _ = make_io(mock_pins)
    led = mock_pins.pin(22)
    assert io.led_state == "idle" and led.state       # steady on when idle
    mock_pins.pin(17).drive_low()
    assert io.led_state == "ringing"
    clock.t += 2.5
    io.poll()
    assert io.led_state == "idle"
    io.set_recording(True)
    assert io.led_state == "recording"
    io.set_privacy(True)
    assert io.led_state == "privacy"                  # privacy wins over everything
    io.set_privacy(False)
    io.set_recording(False)
    assert io.led_state == "idle"
    assert set(LED_PATTERNS) >= {"idle", "ringing", "recording", "privacy"}
    io.close()


def test_buzzer_plays_ding_dong(mock_pins):
    io, clock, rings, _ = make_io(mock_pins, chime_kind="buzzer")
    chime = mock_pins.pin(27)
    mock_pins.pin(17).drive_low()
    seen = []
    for _ in range(80):
        seen.append(bool(chime.state))
        clock.t += 0.01
        io.poll()
    # on, off, on, off: two tones
    changes = [seen[0]] + [b for a, b in zip(seen, seen[1:]) if a != b]
    assert changes == [True, False, True, False]
    io.close()


def test_pull_down_wiring(mock_pins):
    io, clock, rings, _ = make_io(mock_pins, button_pull_up=False)
    mock_pins.pin(17).drive_high()          # active-high button
    assert len(rings) == 1
    io.close()


def test_simulated_press_takes_the_gpio_path(mock_pins):
    io, clock, rings, _ = make_io(mock_pins)
    io.press()
    assert len(rings) == 1 and mock_pins.pin(27).state
    io.close()


def test_ring_callback_error_does_not_break_the_chime(mock_pins):
    cfg = GpioSection(pin_factory="mock", long_press_s=None)

    def boom(ts: float) -> None:
        raise RuntimeError("consumer bug")

    io = DoorbellIO(cfg, on_ring=boom, pin_factory=mock_pins, start_thread=False)
    mock_pins.pin(17).drive_low()
    assert mock_pins.pin(27).state
    io.close()


def test_watcher_thread_ends_the_pulse_in_real_time(mock_pins):
    cfg = GpioSection(pin_factory="mock", chime_pulse_s=0.05, long_press_s=None)
    io = DoorbellIO(cfg, on_ring=lambda ts: None, pin_factory=mock_pins)
    chime = mock_pins.pin(27)
    mock_pins.pin(17).drive_low()
    assert chime.state
    import time

    deadline = time.monotonic() + 2
    while chime.state and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not chime.state
    io.close()


@pytest.mark.parametrize("bad", [{"ring_interval_s": -1}, {"chime_kind": "trumpet"}, {"debounce_s": 5}])
def test_invalid_gpio_config_is_refused(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GpioSection(**bad)
