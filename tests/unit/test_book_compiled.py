"""The compiled requote walk (``soakq/metrics/book/_requote.c``) gives the numpy path's bits, on
random markets and parameters and end to end (docs/simulator.md, "Speed"). Under CI the
extension must have been built, so these tests can never pass by skipping there."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soakq.metrics.base import MeasureRequest
from soakq.metrics.book import kernels, load_book_config, simulate
from soakq.metrics.book import quotes as quotes_module
from soakq.metrics.book.market import Market, build_market
from soakq.profiles import load_profile

needs_compiled = pytest.mark.skipif(
    not quotes_module.COMPILED and not os.environ.get("CI"),
    reason="the C requote walk was not built (no C compiler at install)",
)
MODES = ["calm", "volatile", "spike"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_ci_builds_the_compiled_walk() -> None:
    if not os.environ.get("CI"):
        pytest.skip("only CI promises a C compiler")
    assert quotes_module.COMPILED, "CI installed soakq without building _requote.c"


def test_a_build_from_another_source_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable checkout whose _requote.c changed since `pip install -e .` keeps the old
    build: it is set aside with a warning, and the numpy path runs."""
    import hashlib
    import types

    from soakq.metrics import book as book_package

    source = Path(quotes_module.__file__).with_name("_requote.c").read_bytes()
    stale = types.ModuleType("soakq.metrics.book._requote")
    stale.SOURCE_SHA256 = hashlib.sha256(source + b"/* edited */").hexdigest()  # type: ignore[attr-defined]
    stale.__file__ = "/somewhere/_requote.so"
    monkeypatch.setattr(book_package, "_requote", stale, raising=False)
    monkeypatch.setitem(sys.modules, "soakq.metrics.book._requote", stale)
    with pytest.warns(RuntimeWarning, match="built from another _requote.c"):
        assert quotes_module._compiled() is None
    stale.SOURCE_SHA256 = hashlib.sha256(source).hexdigest()  # type: ignore[attr-defined]
    assert quotes_module._compiled() is stale


def _market(
    seed: int, mode: str, symbol: str, spike_prob: float | None, gap_bps: float | None
) -> Market:
    cfg = load_book_config()
    regime = cfg.regime(mode)
    return build_market(
        cfg,
        regime,
        cfg.symbol(symbol),
        seed=seed,
        mode=mode,
        symbol=symbol,
        iteration=1,
        sigma_scale=1.0,
        jumps_per_min=regime.jumps_per_min if spike_prob is None else spike_prob,
        jump_bps=regime.jump_bps if gap_bps is None else gap_bps,
    )


@needs_compiled
@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    mode=st.sampled_from(MODES),
    symbol=st.sampled_from(SYMBOLS),
    spike_prob=st.sampled_from([None, 0.0, 2.0, 30.0, 1e4]),  # jumps per minute: urgent requotes
    gap_bps=st.sampled_from([None, 1.0, 500.0]),
    # Beyond the parameters' bounds on purpose, to absurd values the simulator still accepts.
    tail_age_ms=st.one_of(st.floats(0.0, 3000.0), st.floats(-1e300, 1e300)),
    min_interval_ms=st.one_of(st.floats(0.0, 600.0), st.floats(-1e300, 1e300)),
    # Replacements per minute, down to budgets whose interval has no int64 (once a segfault).
    rate=st.one_of(st.floats(10.0, 3000.0), st.floats(1e-250, 1e9)),
    burst_s=st.sampled_from([0.0, 1.0, 4.0]),
)
def test_compiled_walk_gives_the_numpy_walks_steps(
    seed: int,
    mode: str,
    symbol: str,
    spike_prob: float | None,
    gap_bps: float | None,
    tail_age_ms: float,
    min_interval_ms: float,
    rate: float,
    burst_s: float,
) -> None:
    market = _market(seed, mode, symbol, spike_prob, gap_bps)
    cfg = load_book_config()
    per_step = rate * cfg.clock.step_ms / 60_000.0
    args = {
        "tol_bps": cfg.regime(mode).requote_bps,
        "tail_steps": tail_age_ms / cfg.clock.step_ms,
        "gap_steps": 2.0 * min_interval_ms / cfg.clock.step_ms,
        "interval": kernels.dyadic(2.0 / per_step),
        "tolerance": kernels.dyadic((max(2.0, rate * burst_s / 60.0) - 2.0) / per_step),
    }
    n = cfg.clock.steps
    steps, price = quotes_module.requote_steps(market, n, compiled=True, **args)
    ref_steps, ref_price = quotes_module.requote_steps(market, n, compiled=False, **args)
    assert steps.dtype == ref_steps.dtype and price.dtype == ref_price.dtype
    assert np.array_equal(steps, ref_steps)
    assert np.array_equal(price, ref_price)


@needs_compiled
@pytest.mark.parametrize("mode", MODES)
def test_simulate_is_the_same_with_and_without_the_compiled_walk(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = load_profile("aggressive").overrides  # the most requotes of the profiles
    requests = [
        MeasureRequest(seed, mode, symbol, 1 + seed % 3, overrides, spike_prob=knob)
        for seed, symbol, knob in [(1, "BTCUSDT", None), (2, "ETHUSDT", 1.0), (3, "SOLUSDT", None)]
    ]
    monkeypatch.setattr(quotes_module, "COMPILED", True)
    compiled = [simulate(r).metrics for r in requests]
    monkeypatch.setattr(quotes_module, "COMPILED", False)
    assert [simulate(r).metrics for r in requests] == compiled


@needs_compiled
@pytest.mark.parametrize(
    ("interval", "tolerance"),
    [(math.inf, 0.0), (1e300, 0.0), (1e19, 0.0), (1.0, -math.inf), (1.0, -1e300), (math.nan, 1.0)],
)
def test_the_compiled_walk_stays_in_its_buffers_whatever_the_budget(
    interval: float, tolerance: float
) -> None:
    """Budgets no rate gives (the wrapper's callers never pass them) end the walk or leave it
    unlimited; they never index outside the buffers (these once crashed the interpreter)."""
    market = _market(3, "spike", "SOLUSDT", 1e4, None)
    walk = quotes_module._requote.walk  # type: ignore[union-attr]
    n = load_book_config().clock.steps
    raw, price = walk(
        market.mid, market.phase, market.jump_steps, n, 0.5, 5.0, 1.0, interval, tolerance
    )
    steps = np.frombuffer(raw, dtype=np.int64)
    assert steps.size == len(price) >= 1 and steps[0] == 0
    assert np.all(np.diff(steps) > 0) and steps[-1] < n


@needs_compiled
def test_the_compiled_walk_refuses_buffers_too_short_for_n() -> None:
    market = _market(1, "calm", "ETHUSDT", None, None)
    walk = quotes_module._requote.walk  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="len\\(mid\\) > n"):
        walk(market.mid, market.phase, market.jump_steps, market.mid.size, 0.5, 5.0, 1.0, 1.0, 0.0)
