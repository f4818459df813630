"""Each benchmark at a tiny size: the equality / agreement checks it makes hold.

Not timing tests: nothing here looks at how fast anything is.
"""

from __future__ import annotations

import backtesting  # noqa: F401  (the peers come with the test extra: never skipped)
import numpy as np
import pytest
import vectorbt  # noqa: F401

from benchmarks import backtest, engine, ingest
from benchmarks._common import compile_times


def test_ingest_smoke():
    res = ingest.run(days=2, repeat=1, command="test", quick=True, measure_compile=False)
    assert res.n_bars > 2_000
    paths = (ingest.HF, ingest.BASE, ingest.HF_FP, ingest.BASE_FP)
    assert res.rows_written == dict.fromkeys(paths, res.n_bars)
    assert res.stored_equal == dict.fromkeys(paths, True)
    assert res.quarantined == 0
    assert set(res.stages[ingest.HF]) == set(res.stages[ingest.HF_FP]) == set(ingest.HF_STAGES)
    assert res.fp_digits > 15.5  # the full-precision payload does carry ~17 digits
    text = ingest.render(res)
    assert "bars/s" in text and "Reproduce: `test`" in text and "Full precision" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_backtest_e2e_smoke():
    res = backtest.run(days=3, repeat=1, command="test", quick=True, processes=False)
    assert res.n_bars > 800
    assert res.signal_agreement > 0.999
    assert res.trades[backtest.HF] > 0 and res.trades[backtest.VBT] > 0
    for fmt in backtest.FORMATS:
        assert set(res.stages[fmt][backtest.HF]) == set(backtest.HF_STAGES)
        assert set(res.stages[fmt][backtest.VBT]) == set(backtest.VBT_STAGES)
    text = backtest.render(res)
    assert "vectorbt script" in text and "Reproduce: `test`" in text


@pytest.mark.slow  # .ci/run step 3 runs it; keeps the default suite under 10 min
def test_engine_smoke():
    res = engine.run(
        days=12,
        bt_bars=1_500,
        repeat=1,
        bt_repeat=1,
        command="test",
        quick=True,
        measure_compile=False,
    )
    assert [s.name for s in res.strategies] == list(engine.STRATEGIES)
    for s in res.strategies:
        a = s.agreement
        assert a.other == 0
        assert a.hf_trades == a.vbt_trades > 0
        assert a.identical + a.open_at_end + a.fill_bar + a.signal_vs_stop == a.hf_trades
        assert a.max_rel_diff <= engine.REL_TOL
        assert s.btpy_agreement["hf"] > 0
        b = s.short_agreement
        assert b is not None and b.other == 0 and 0 < b.shorts < b.hf_trades == b.vbt_trades
        done = b.identical + b.open_at_end + b.fill_bar + b.signal_vs_stop + b.reversal_entry
        assert done == b.hf_trades


def test_compile_probe_cold_then_cached():
    ct = compile_times(("engine",))
    assert ct.cold["engine"] > ct.cached["engine"] > 0


# ----------------------------------------------------------- agreement classes


def _bars(rows):
    o, h, lo, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return o, h, lo, c


def _agreement(rows, signal):
    from hedgeflow.engine import run_arrays

    o, h, lo, c = _bars(rows)
    sig = np.array(signal, dtype=np.int8)
    cfg = engine.engine_config()
    entries, exits = engine.order_arrays(sig)
    out = run_arrays(o, h, lo, c, sig, cfg)
    pf = engine.run_vbt(o, h, lo, c, entries, exits, cfg)
    return engine.compare_with_vbt(out, pf, o, h, lo, c, exits, cfg)


FLAT = (100.0, 100.2, 99.8, 100.0)


def test_identical_trade_and_open_at_end():
    rows = [FLAT] * 4 + [FLAT] * 4
    a = _agreement(rows, [0, 1, 1, 0, 0, 1, 1, 1])
    # entry at bar 2, signal exit at bar 4's open; entry at bar 6, still open at the end
    assert (a.identical, a.open_at_end, a.other) == (1, 1, 0)


def test_stop_inside_the_fill_bar_is_exception_a():
    rows = [FLAT, FLAT, (100.0, 100.2, 98.5, 99.0), (99.0, 99.2, 98.8, 99.0), FLAT, FLAT]
    a = _agreement(rows, [0, 1, 1, 1, 0, 0])
    assert (a.fill_bar, a.other) == (1, 0)


def test_signal_exit_and_intrabar_stop_is_exception_b():
    rows = [FLAT, FLAT, FLAT, (99.5, 99.6, 98.0, 98.5), FLAT]
    a = _agreement(rows, [0, 1, 0, 0, 0])  # exit queued at bar 2's close, fills at bar 3 open
    assert (a.signal_vs_stop, a.other) == (1, 0)


def test_unexplained_difference_is_counted_as_other():
    from hedgeflow.engine import run_arrays

    rows = [FLAT] * 6
    o, h, lo, c = _bars(rows)
    sig = np.array([0, 1, 1, 0, 0, 0], dtype=np.int8)
    cfg = engine.engine_config()
    out = run_arrays(o, h, lo, c, sig, cfg)
    entries, exits = engine.order_arrays(sig)
    exits = np.roll(exits, 1)  # vectorbt exits one bar later than hedgeflow
    pf = engine.run_vbt(o, h, lo, c, entries, exits, cfg)
    a = engine.compare_with_vbt(out, pf, o, h, lo, c, exits, cfg)
    assert a.other == 1 and a.examples


def _agreement_both(rows, signal):
    """hedgeflow with shorts against vectorbt with long and short signals."""
    from dataclasses import replace

    from hedgeflow.engine import run_arrays

    o, h, lo, c = _bars(rows)
    sig = np.array(signal, dtype=np.int8)
    cfg = replace(engine.engine_config(), allow_short=True)
    orders = engine.order_arrays_both(sig)
    out = run_arrays(o, h, lo, c, sig, cfg)
    pf = engine.run_vbt_both(o, h, lo, c, orders, cfg)
    at_open = orders[0] | orders[1] | orders[2] | orders[3]
    return engine.compare_with_vbt(out, pf, o, h, lo, c, at_open, cfg), out


def test_shorts_identical_trades_through_a_reversal():
    rows = [FLAT] * 9
    # long at bar 2; 1 -> -1 at bar 3's close: the long exits and a short enters at bar
    # 4's open; -1 -> 0: the short covers at bar 6; a short from bar 8 is open at the end
    a, out = _agreement_both(rows, [0, 1, 1, -1, -1, 0, 0, -1, -1])
    assert out["side"].tolist() == [1, -1, -1]
    assert out["exit_idx"][0] == out["entry_idx"][1] == 4
    assert (a.identical, a.open_at_end, a.other, a.vbt_trades) == (2, 1, 0, 3)


def test_short_stop_inside_the_fill_bar_is_exception_a():
    rows = [FLAT, FLAT, (100.0, 101.5, 99.9, 101.0), (101.0, 101.2, 100.8, 101.0), FLAT, FLAT]
    a, out = _agreement_both(rows, [0, -1, -1, -1, 0, 0])
    assert out["side"].tolist() == [-1]
    assert (a.fill_bar, a.other) == (1, 0)


def test_short_cover_at_the_open_vs_intrabar_stop_is_exception_b():
    # the cover queued at bar 2's close fills at bar 3's open; bar 3's high reaches the stop
    rows = [FLAT, FLAT, FLAT, (100.5, 102.0, 100.4, 101.5), FLAT]
    a, _ = _agreement_both(rows, [0, -1, 0, 0, 0])
    assert (a.signal_vs_stop, a.other) == (1, 0)


def test_reversal_whose_exit_vectorbt_stops_first_counts_its_entry():
    # short at bar 2 (stop 101); -1 -> 1 at bar 3's close: at bar 4's open hedgeflow covers
    # and goes long; bar 4's high reaches the short's stop, so vectorbt stops out first
    # and does not go long in that bar
    rows = [FLAT, FLAT, FLAT, FLAT, (100.5, 101.5, 100.4, 101.0), FLAT, FLAT]
    a, out = _agreement_both(rows, [0, -1, -1, 1, 1, 0, 0])
    assert out["side"].tolist() == [-1, 1]
    assert (a.signal_vs_stop, a.reversal_entry, a.other) == (1, 1, 0)


def test_reversal_at_an_open_beyond_the_stop_counts_its_entry():
    # long at bar 2 (stop 99); 1 -> -1 at bar 3's close; bar 4 opens at 98.5, below the
    # stop: both exit at that open (vectorbt by its stop), only hedgeflow then goes short
    rows = [FLAT, FLAT, FLAT, FLAT, (98.5, 98.7, 98.3, 98.6), FLAT, FLAT]
    a, out = _agreement_both(rows, [0, 1, 1, -1, -1, 0, 0])
    assert out["side"].tolist() == [1, -1] and out["reason"][0] == engine.R_SIGNAL
    assert (a.identical, a.reversal_entry, a.other) == (1, 1, 0)


def test_a_short_where_vectorbt_has_a_long_is_other():
    from dataclasses import replace

    from hedgeflow.engine import run_arrays

    o, h, lo, c = _bars([FLAT] * 5)
    cfg = replace(engine.engine_config(), allow_short=True)
    out = run_arrays(o, h, lo, c, np.array([0, -1, -1, 0, 0], dtype=np.int8), cfg)
    long_orders = engine.order_arrays_both(np.array([0, 1, 1, 0, 0], dtype=np.int8))
    pf = engine.run_vbt_both(o, h, lo, c, long_orders, cfg)
    a = engine.compare_with_vbt(out, pf, o, h, lo, c, long_orders[1], cfg)
    # ours has no twin of its side, theirs none of its own: both counted
    assert a.other == 2 and "side" in a.examples[0]["what"]


@pytest.mark.slow  # about 5 s (the reference over 12,870 splits)
def test_overfit_smoke():
    from benchmarks import overfit

    res = overfit.run(rows=2_000, trials=20, repeat=1, command="test", quick=True)
    assert res.agreement < 1e-9  # hedgeflow = the plain reference on the small input
    assert res.n_splits == 12_870 and res.summary["n_trials"] == 20
    assert res.summary["best_trial"] == "trial_7"  # the planted edge
    text = overfit.render(res)
    assert "extrapolated" in text and "Reproduce: `test`" in text


@pytest.mark.slow  # about 4 s (three contestants, compiled kernels)
def test_walkforward_smoke():
    from benchmarks import walkforward

    res = walkforward.run(6, (5, 10), (50, 60), "2d", "1d", repeat=1, command="test", quick=True)
    assert (res.n_bars, res.n_combos) == (1_728, 4)
    # 6 days: 4 folds of 576 train bars, 4 combinations each, plus the winners' runs
    # (the slow SMA's warm-up of 49 or 59 bars and 288 test bars)
    assert res.wf_folds == 4
    assert 4 * 4 * 576 + 4 * (288 + 49) <= res.wf_work <= 4 * 4 * 576 + 4 * (288 + 59)
    assert res.cpcv_splits == 15
    text = walkforward.render(res)
    assert "rolling walk-forward (4 folds, train 2d, test 1d)" in text
    assert "Quick run" in text and "Reproduce: `test`" in text
