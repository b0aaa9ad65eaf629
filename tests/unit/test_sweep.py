"""Sweeps (docs/sweeps.md): the plan pairs seeds and differs only in the compared factor; the
statistics are scipy's exact tests; SWEEP.json numbers follow from the runs' facts; the CLI
writes the same SWEEP content twice and refuses bad input in one line; a killed or interrupted
embedded sweep leaves no pool process behind and the same command finishes it, to the same
SWEEP.json."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy import stats
from soakq_testkit import strip_runtime

from soakq.errors import ConfigError
from soakq.jsonio import sha256_of
from soakq.params import KEYS
from soakq.settings import Settings
from soakq.sweep import (
    Plan,
    RunFacts,
    Submitter,
    SweepConfig,
    arms_for,
    count_reversals,
    execute,
    mcnemar_exact,
    parse_seeds,
    sweep_document,
    wilcoxon_p,
    wilson,
)


# -- input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seeds"),
    [("1-4", (1, 2, 3, 4)), ("7", (7,)), ("3,1,2-3", (1, 2, 3)), (" 5 - 6 ,9", (5, 6, 9))],
)
def test_parse_seeds(text: str, seeds: tuple[int, ...]) -> None:
    assert parse_seeds(text, "--seeds") == seeds


@pytest.mark.parametrize(
    "text", ["", "a", "1-", "-3", "5-2", "1;2", "1.5", "0-999999", str(2**63), "1-" + str(2**70)]
)
def test_parse_seeds_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="^--seeds "):
        parse_seeds(text, "--seeds")


def test_arms_differ_in_the_compared_factor_only() -> None:
    a, b = arms_for("auto-tune")
    assert (a.auto_tune, b.auto_tune, a.guards, b.guards) == (True, False, True, True)
    a, b = arms_for("guards")
    assert (a.auto_tune, b.auto_tune, a.guards, b.guards) == (True, True, True, False)
    a, b = arms_for("profile:steady_safe")
    assert (a.profile_for("aggressive"), b.profile_for("aggressive")) == (
        "aggressive",
        "steady_safe",
    )
    assert (a.label("aggressive"), b.label("aggressive")) == ("aggressive", "steady_safe")
    for bad in ("tuner", "profile:nope", ""):
        with pytest.raises(ConfigError, match="--compare"):
            arms_for(bad)


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"profiles": ("nope",)}, "--profiles: unknown profile 'nope'"),
        ({"profiles": ()}, "--profiles"),
        ({"modes": ("calmm",)}, "--modes: unknown mode 'calmm'"),
        ({"seeds": ()}, "--seeds"),
        ({"holdout_seeds": (2,)}, "--holdout-seeds: must not repeat"),
        ({"compare": "profile:aggressive"}, "aggressive is also in --profiles"),
        ({"sweep_id": "../x"}, "--sweep-id"),
    ],
)
def test_config_refusals_name_the_flag(kw: dict, said: str) -> None:
    base = {"profiles": ("aggressive",), "modes": ("calm",), "seeds": (1, 2)}
    with pytest.raises(ConfigError, match=said.replace("(", r"\(")):
        SweepConfig(**{**base, **kw})


# -- the plan ------------------------------------------------------------------------------
def _plan(**kw: object) -> Plan:
    base = {
        "profiles": ("aggressive", "steady_safe"),
        "modes": ("calm", "spike"),
        "seeds": (1, 2, 3),
        "iterations": 6,
        "holdout_seeds": (101, 102),
        "holdout_iterations": 7,
    }
    return Plan(SweepConfig(**{**base, **kw}), Settings())  # type: ignore[arg-type]


def test_plan_pairs_every_cell_on_the_same_seeds() -> None:
    plan = _plan()
    runs = plan.arm_runs()
    assert len(runs) == 2 * 2 * 3 * 2 and plan.total_runs == len(runs) * 3
    assert len({r.run_id for r in runs}) == len(runs)
    for r in runs:
        assert r.run_id == f"{plan.sweep_id}.{r.profile}.{r.mode}.s{r.seed}.{r.arm}"
        s = r.spec
        assert (s.profile, s.mode, s.seed, s.iterations) == (r.profile, r.mode, r.seed, 6)
        assert (s.source, s.kpi_gate, s.interval_s) == ("book", "soft", 0.0)
        assert s.auto_tune is (r.arm == "auto-tune")
        twin = next(
            t for t in runs if (t.profile, t.mode, t.seed) == (r.profile, r.mode, r.seed) and t != r
        )
        a, b = s.as_json(), twin.spec.as_json()
        differ = {k for k in a if a[k] != b[k]}
        assert differ == {"run_id", "auto_tune"}


def test_holdouts_re_measure_the_final_overrides_untuned() -> None:
    plan = _plan()
    run = plan.arm_runs()[0]
    final = {k: v for k, v in run.spec.overrides.items()}
    final["tail_age_ms"] = 780
    final["base_spread_bps_delta"] = 0.2
    held = plan.holdouts(run, RunFacts("PASSED", 3.0, 5, 1, final))
    assert [h.seed for h in held] == [101, 102]
    config = sha256_of(final)[:10]
    for h in held:
        assert h.run_id == f"{plan.sweep_id}.{run.profile}.{run.mode}.{run.arm}.c{config}.h{h.seed}"
        assert h.holdout_of == config
        assert h.spec.auto_tune is False and h.spec.iterations == 7
        assert dict(h.spec.overrides) == final
        assert (h.spec.profile, h.spec.mode) == (run.spec.profile, run.spec.mode)
    assert plan.holdouts(held[0], RunFacts("PASSED", 1.0, 0, 0, final)) == []
    # Another arm run of the cell ending on the same overrides shares those hold-out runs.
    twin = next(
        r
        for r in plan.arm_runs()
        if r != run and (r.profile, r.mode, r.arm) == (run.profile, run.mode, run.arm)
    )
    assert [h.run_id for h in plan.holdouts(twin, RunFacts("FAILED", 2.0, 1, 0, final))] == [
        h.run_id for h in held
    ]


def test_the_sweep_id_is_derived_from_the_config() -> None:
    assert _plan().sweep_id == _plan().sweep_id
    assert _plan().sweep_id != _plan(iterations=7).sweep_id
    assert _plan(sweep_id="mine").sweep_id == "mine"


# -- statistics ----------------------------------------------------------------------------
def test_wilson_matches_the_formula() -> None:
    for k, n in ((0, 6), (3, 6), (6, 6), (17, 20)):
        low, high = wilson(k, n)
        z = stats.norm.ppf(0.975)
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-6)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-6)
        assert low <= p <= high
    assert wilson(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_is_the_binomial_test_of_discordant_pairs() -> None:
    a = [True] * 8 + [False] * 2 + [True] * 5
    b = [False] * 8 + [True] * 2 + [True] * 5
    # 8 pairs A only, 2 B only: P(X <= 2 or X >= 8 | n=10, 1/2) = 2 * 56/1024
    assert mcnemar_exact(a, b) == pytest.approx(112 / 1024, abs=1e-6)
    assert mcnemar_exact([True, False], [True, False]) == 1.0
    assert mcnemar_exact([True] * 6, [False] * 6) == pytest.approx(2 / 64, abs=1e-6)


def test_wilcoxon_on_pairs_with_values() -> None:
    a = [3.0, 2.5, 4.0, 3.2, None, 2.9]
    b = [2.0, 2.4, 3.0, 3.1, 1.0, None]
    expected = stats.wilcoxon([1.0, 0.1, 1.0, 0.1]).pvalue
    assert wilcoxon_p(a, b) == pytest.approx(expected, abs=1e-6)
    assert wilcoxon_p([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert wilcoxon_p([None], [1.0]) is None


def test_count_reversals() -> None:
    def doc(**d: float) -> dict:
        return {"tuning": {"applied_deltas": d}}

    docs = [doc(a=1, b=-1), doc(a=1), doc(a=-1, b=1), doc(b=1), doc(a=2)]
    assert count_reversals(docs) == 3  # a: + + - +, b: - +


# -- the document --------------------------------------------------------------------------
class FakeSubmitter:
    """Facts by rule: the tuned arm passes on even seeds and ends on tail_age_ms 600 + 10 *
    (seed // 2) (seeds 2 and 3 on the same overrides); hold-outs pass when tuned; the untuned
    arm keeps the profile's overrides."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.specs: dict[str, object] = {}

    def submit(self, spec: object) -> None:
        self.queue.append(spec.run_id)  # type: ignore[attr-defined]
        self.specs[spec.run_id] = spec  # type: ignore[attr-defined]

    def next_done(self) -> tuple[str, RunFacts]:
        run_id = self.queue.pop()  # last in, first out: order must not matter
        spec = self.specs[run_id]
        tuned = ".auto-tune" in run_id
        seed = spec.seed  # type: ignore[attr-defined]
        verdict = "PASSED" if (tuned and seed % 2 == 0) or ".h" in run_id and tuned else "FAILED"
        net = float(seed) + (1.0 if tuned else 0.0)
        final = dict(spec.overrides)  # type: ignore[attr-defined]
        if tuned and ".h" not in run_id:
            final["tail_age_ms"] = 600 + 10 * (seed // 2)
        return run_id, RunFacts(verdict, net, 3 if tuned else 0, 1 if tuned else 0, final)


def test_document_numbers_follow_from_the_facts() -> None:
    plan = _plan(profiles=("aggressive",), modes=("volatile",), seeds=(1, 2, 3, 4))
    seen: list[int] = []
    totals: list[int] = []

    def progress(run: object, f: RunFacts, done: int, total: int) -> None:
        seen.append(done)
        totals.append(total)

    facts = execute(plan, FakeSubmitter(), progress=progress)
    # 8 arm runs; hold-outs on 2 seeds of 3 distinct tuned configurations and of the profile.
    assert len(facts) == 8 + 3 * 2 + 1 * 2 == 16
    assert seen == list(range(1, 17)) and totals[0] == plan.total_runs == 24 and totals[-1] == 16
    doc = sweep_document(plan, facts, {"execution": "test"})
    tuned, untuned = doc["cells"]
    assert (tuned["arm"], untuned["arm"]) == ("auto-tune", "no-auto-tune")
    assert (tuned["runs"], tuned["passed"], tuned["pass_rate"]) == (4, 2, 0.5)
    assert tuned["verdicts"] == {"PASSED": 2, "FAILED": 2, "INCONCLUSIVE": 0}
    assert (untuned["passed"], untuned["pass_rate"]) == (0, 0.0)
    assert tuned["wilson_low"] < 0.5 < tuned["wilson_high"]
    assert (tuned["holdout_runs"], tuned["holdout_passed"], tuned["holdout_pass_rate"]) == (
        6,
        6,
        1.0,
    )
    assert (tuned["holdout_configs"], untuned["holdout_configs"]) == (3, 1)
    assert (untuned["holdout_runs"], untuned["holdout_passed"]) == (2, 0)
    assert tuned["final_net_bps_mean"] == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert (tuned["applied_per_run"], tuned["reversals_per_run"]) == (3.0, 1.0)
    (cmp,) = doc["comparisons"]
    assert cmp["discordant"] == {"a_only": 2, "b_only": 0}
    assert cmp["mcnemar_p"] == pytest.approx(0.5)  # 2 of 2 discordant: 2 * 1/4
    assert cmp["pass_rate_diff"] == 0.5 and cmp["holdout_pass_rate_diff"] == 1.0
    assert cmp["wilcoxon_p"] == pytest.approx(stats.wilcoxon([1.0] * 4).pvalue, abs=1e-6)
    assert set(doc["runs"]) == set(facts)
    assert doc["runtime"] == {"execution": "test"}


# -- the command ---------------------------------------------------------------------------
SWEEP = ["--profiles", "aggressive", "--modes", "volatile", "--seeds", "1-6", "--iterations", "12"]


def _soakq(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    return subprocess.run(
        [sys.executable, "-m", "soakq", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _no_runtime(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("runtime")
    return doc


@pytest.mark.slow
def test_sweep_command_writes_the_same_sweep_twice(tmp_path: Path) -> None:
    args = ["sweep", *SWEEP, "--compare", "auto-tune", "--holdout-seeds", "101", "--jobs", "2"]
    one = _soakq(*args, "--artifacts", "a", cwd=tmp_path)
    two = _soakq(*args, "--artifacts", "b", "--jobs", "1", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    (d1,) = (tmp_path / "a" / "sweeps").iterdir()
    (d2,) = (tmp_path / "b" / "sweeps").iterdir()
    assert d1.name == d2.name
    doc = _no_runtime(d1 / "SWEEP.json")
    assert doc == _no_runtime(d2 / "SWEEP.json")
    assert (d1 / "SWEEP.md").read_text() == (d2 / "SWEEP.md").read_text()
    assert (d1 / "sweep.png").stat().st_size > 0
    cells = doc["cells"]
    # One hold-out run per distinct final configuration (one hold-out seed): the untuned arm
    # ends where it started, on the profile; the tuned runs on as many as they differ.
    distinct = [
        len({json.dumps(doc["runs"][r]["final_overrides"], sort_keys=True) for r in c["run_ids"]})
        for c in cells
    ]
    assert distinct[1] == 1 and distinct[0] >= 1
    assert [(c["arm"], c["runs"], c["holdout_runs"], c["holdout_configs"]) for c in cells] == [
        ("auto-tune", 6, distinct[0], distinct[0]),
        ("no-auto-tune", 6, 1, 1),
    ]
    for c in cells:
        assert c["wilson_low"] <= c["pass_rate"] <= c["wilson_high"]
        assert sum(c["verdicts"].values()) == c["runs"]
        for k in ("passed", "reversals_per_run", "final_net_bps_mean"):
            assert k in c
    (cmp,) = doc["comparisons"]
    assert 0.0 <= cmp["mcnemar_p"] <= 1.0 and 0.0 <= cmp["wilcoxon_p"] <= 1.0
    # The run directories stay inspectable, and each one says what its facts say.
    for run_id, facts in doc["runs"].items():
        run_dir = d1 / "soak" / run_id
        gate = json.loads((run_dir / "RELEASE_GATE.json").read_text())
        assert gate["verdict"] == facts["verdict"]
        assert (
            json.loads((run_dir / "runtime_overrides.json").read_text()) == facts["final_overrides"]
        )
        assert set(facts["final_overrides"]) == set(KEYS)
    # A third time in the same root reads the finished runs back: same document.
    again = _soakq(*args, "--artifacts", "a", cwd=tmp_path)
    assert again.returncode == 0 and _no_runtime(d1 / "SWEEP.json") == doc


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--seeds", "abc"], "--seeds 'abc'"),
        (["--compare", "tuner"], "--compare 'tuner'"),
        (["--profiles", "nope"], "--profiles: unknown profile 'nope'"),
        (["--modes", "calmm"], "--modes: unknown mode 'calmm'"),
        (["--jobs", "0"], "--jobs 0"),
        (["--iterations", "0"], "--iterations 0"),
    ],
)
def test_sweep_bad_input_is_one_line(tmp_path: Path, args: list[str], said: str) -> None:
    done = _soakq("sweep", *args, "--artifacts", "a", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert said in done.stderr
    assert not (tmp_path / "a" / "sweeps").exists()


@pytest.mark.slow
def test_tuned_configurations_hold_up_on_seeds_they_never_saw(tmp_path: Path) -> None:
    """The project's own goal (docs/sweeps.md): from aggressive, 24 iterations, 10 paired seeds,
    the tuned runs' final overrides pass the release gate on hold-out seeds 101-103 at least 30
    points more often than the untuned profile, on volatile and on spike."""
    done = _soakq(
        "sweep",
        *("--profiles", "aggressive", "--modes", "volatile,spike", "--seeds", "1-10"),
        *("--iterations", "24", "--compare", "auto-tune", "--holdout-seeds", "101-103"),
        *("--artifacts", "a"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (sweep,) = (tmp_path / "a" / "sweeps").iterdir()
    doc = json.loads((sweep / "SWEEP.json").read_text())
    for cmp in doc["comparisons"]:
        cells = {
            c["arm"]: c
            for c in doc["cells"]
            if (c["profile"], c["mode"]) == (cmp["profile"], cmp["mode"])
        }
        tuned, untuned = cells["auto-tune"], cells["no-auto-tune"]
        assert untuned["holdout_runs"] == 3  # the profile on each hold-out seed, once
        assert 3 <= tuned["holdout_runs"] == 3 * tuned["holdout_configs"] <= 30
        diff = tuned["holdout_pass_rate"] - untuned["holdout_pass_rate"]
        assert diff == pytest.approx(cmp["holdout_pass_rate_diff"])
        assert diff >= 0.30, (cmp["mode"], tuned["holdout_passed"], untuned["holdout_passed"])
    assert {c["mode"] for c in doc["comparisons"]} == {"volatile", "spike"}


def test_a_run_directory_cut_off_mid_export_is_run_again(tmp_path: Path) -> None:
    """RUN.json says the gate PASSED but RELEASE_GATE.json is missing: not read back as FAILED."""
    from soakq.sweep.local import finished_facts, run_one

    plan = _plan(profiles=("aggressive",), modes=("volatile",), seeds=(1,), holdout_seeds=())
    spec = plan.arm_runs()[0].spec
    run_id, facts = run_one(spec.as_json(), str(tmp_path))
    directory = tmp_path / "soak" / run_id
    assert finished_facts(directory, spec) == RunFacts.from_json(facts)
    gate = json.loads((directory / "RELEASE_GATE.json").read_text())
    (directory / "RELEASE_GATE.json").unlink()
    assert finished_facts(directory, spec) is None
    assert run_one(spec.as_json(), str(tmp_path)) == (run_id, facts)  # run again, same facts
    assert json.loads((directory / "RELEASE_GATE.json").read_text()) == gate


def _run_files(directory: Path) -> dict[str, object]:
    """A run directory's files by name, JSON outside ``runtime``, the rest as bytes."""
    return {
        p.name: strip_runtime(json.loads(p.read_text())) if p.suffix == ".json" else p.read_bytes()
        for p in sorted(directory.iterdir())
    }


def _leave_as_a_kill_does(
    run: Path, iterations: int, *, finished_but_run_json: bool = False
) -> None:
    """What ``kill -9`` leaves in a run directory: the ITER_SUMMARY files written so far (or
    every file but RUN.json, which is written last), no RUN.json, and the temporary file of
    the atomic write it cut off."""
    for path in run.iterdir():
        m = re.fullmatch(r"ITER_SUMMARY_(\d+)\.json", path.name)
        keep = path.name != "RUN.json" if finished_but_run_json else bool(m)
        if not keep or (m and int(m.group(1)) > iterations):
            path.unlink()
    cut = "RUN.json" if finished_but_run_json else f"ITER_SUMMARY_{iterations + 1}.json"
    (run / f".{cut}.k1ll3d.tmp").write_text('{"iteration": ')


@pytest.mark.slow
def test_a_killed_sweep_continues_to_the_same_sweep(tmp_path: Path) -> None:
    """A sweep killed with -9 leaves run directories without RUN.json, some with only a temporary
    file, some mid-way; the same command redoes those runs from scratch (clearing what the kill
    left) and ends with the SWEEP.json of an uninterrupted sweep (docs/sweeps.md)."""
    args = ["sweep", *SWEEP[:4], "--seeds", "1-3", "--iterations", "8"]
    args += ["--holdout-seeds", "101", "--jobs", "2"]
    clean = _soakq(*args, "--artifacts", "a", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    (reference,) = (tmp_path / "a" / "sweeps").iterdir()
    killed = tmp_path / "b" / "sweeps" / reference.name
    shutil.copytree(reference, killed, symlinks=True)
    for name in ("SWEEP.json", "SWEEP.md", "sweep.png"):  # the kill came before the end
        (killed / name).unlink()
    soak = killed / "soak"
    holdout = next(d.name for d in soak.iterdir() if ".h101" in d.name)
    sid = reference.name
    cut = {
        f"{sid}.aggressive.volatile.s1.auto-tune": 0,  # only a temporary file
        f"{sid}.aggressive.volatile.s2.no-auto-tune": 5,  # mid-way
        holdout: 3,  # a hold-out run mid-way
    }
    for name, iterations in cut.items():
        _leave_as_a_kill_does(soak / name, iterations)
    last = f"{sid}.aggressive.volatile.s3.no-auto-tune"  # killed while writing RUN.json
    _leave_as_a_kill_does(soak / last, 8, finished_but_run_json=True)
    shutil.rmtree(soak / f"{sid}.aggressive.volatile.s3.auto-tune")  # never started
    os.symlink("nowhere", soak / ".latest.999999.tmp")  # a cut-off repoint of `latest`

    again = _soakq(*args, "--artifacts", "b", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert _no_runtime(killed / "SWEEP.json") == _no_runtime(reference / "SWEEP.json")
    assert (killed / "SWEEP.md").read_bytes() == (reference / "SWEEP.md").read_bytes()
    for name in [*cut, last, f"{sid}.aggressive.volatile.s3.auto-tune"]:
        # Run again from scratch: the files of the uninterrupted run and nothing else.
        assert _run_files(soak / name) == _run_files(reference / "soak" / name), name
    assert not [p for p in soak.glob("*/*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_ctrl_c_on_a_sweep_is_one_line_and_the_same_command_continues(tmp_path: Path) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    env["PYTHONUNBUFFERED"] = "1"
    args = ["--profiles", "aggressive", "--modes", "volatile", "--seeds", "1-20"]
    args += ["--iterations", "24", "--artifacts", "a", "--jobs", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "soakq", "sweep", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while not proc.stdout.readline().startswith("run 2/"):  # two runs finished
        assert proc.poll() is None and time.monotonic() < deadline
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted after" in err and "Traceback" not in err
    (sweep,) = (tmp_path / "a" / "sweeps").iterdir()
    assert not (sweep / "SWEEP.json").exists()
    finished = [d for d in (sweep / "soak").iterdir() if (d / "RELEASE_GATE.json").exists()]
    assert len(finished) >= 2


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid`` now: pid -> start time (so a reused pid is not
    taken for one of them), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:  # fields: state, ppid, ... starttime is the 20th
            found[int(stat.parent.name)] = fields[19]
    return found


def _alive(pid: int, started: str) -> bool:
    """Whether that process still exists and is not a zombie."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def _line(proc: subprocess.Popen[str], prefix: str, timeout_s: float) -> None:
    """Read proc's stdout until a line starts with ``prefix``; fail after ``timeout_s``."""
    import selectors

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            assert chunk, f"the sweep ended before {prefix!r}: {buffer}"
            buffer += chunk
            if any(line.startswith(prefix) for line in buffer.splitlines()):
                return
    pytest.fail(f"no line {prefix!r} within {timeout_s} s: {buffer}")


def _spawn_sweep(tmp_path: Path, args: list[str], output: int) -> subprocess.Popen[str]:
    """`soakq sweep ARGS --artifacts a` in ``tmp_path``, in a process group of its own
    (whatever it leaves is the test's to clean up), with no SOAK*_ setting of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "soakq", *args, "--artifacts", "a"],
        env=env,
        cwd=tmp_path,
        stdout=output,
        stderr=output,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("how", ["sigterm", "sigterm-with-an-idle-process", "ctrl-c-on-the-group"])
def test_sigterm_on_a_sweep_stops_its_pool_and_says_so_in_one_line(
    tmp_path: Path, how: str
) -> None:
    """SIGTERM to an embedded sweep acts as Ctrl-C: one line saying how to continue, exit 130,
    and the pool's processes are gone (not left orphaned); the same command then finishes it
    with the SWEEP.json of an uninterrupted sweep. A pool process waiting for work (more
    processes than runs) ends without a traceback too. Ctrl-C on a terminal signals the whole
    process group, pool included: the same one line."""
    from soakq.sweep.local import STOP_GRACE_S

    idle = how == "sigterm-with-an-idle-process"
    grid = ["--seeds", "1", "--iterations", "200", "--jobs", "3"] if idle else []
    grid = grid or ["--seeds", "1-6", "--iterations", "8", "--jobs", "2"]
    args = ["sweep", *SWEEP[:4], *grid]
    proc = _spawn_sweep(tmp_path, args, subprocess.PIPE)
    try:
        if idle:  # two runs on three processes: one waits for work
            deadline = time.monotonic() + 20
            while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the runs are under way
        else:
            _line(proc, "run 1/", timeout_s=20)  # the pool runs: one run finished
        pool = _children(proc.pid)
        assert pool, "no pool process found"
        signalled = time.monotonic()
        if how == "ctrl-c-on-the-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)  # its output is short: the pipes cannot fill
        # The pool ended on SIGTERM, not by the SIGKILL that follows STOP_GRACE_S later.
        assert time.monotonic() - signalled < STOP_GRACE_S
        deadline = time.monotonic() + 5
        while any(_alive(p, t) for p, t in pool.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p, t in pool.items() if _alive(p, t)], "pool processes left running"
        _, err = proc.communicate(timeout=5)  # EOF: nothing holds its pipes any more
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # only if the test failed: its own group
        proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("sweep sweep-") and "interrupted after" in err, err
    assert "the same command continues it" in err, err
    (sweep,) = (tmp_path / "a" / "sweeps").iterdir()
    assert not (sweep / "SWEEP.json").exists()
    if how != "sigterm":
        return
    again = _soakq(*args, "--artifacts", "a", cwd=tmp_path)
    clean = _soakq(*args, "--artifacts", "b", cwd=tmp_path)
    assert again.returncode == 0 and clean.returncode == 0, again.stderr + clean.stderr
    assert _no_runtime(sweep / "SWEEP.json") == _no_runtime(
        tmp_path / "b" / "sweeps" / sweep.name / "SWEEP.json"
    )
    assert not [p for p in (sweep / "soak").glob("*/*") if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
def test_a_sweep_killed_outright_takes_its_pool_with_it(tmp_path: Path) -> None:
    """kill -9 of the sweep's process alone (the OOM killer does that): nothing is there to
    stop the pool, so the kernel does it; no pool process is left orphaned, waiting forever."""
    args = ["sweep", *SWEEP[:4], "--seeds", "1", "--iterations", "200", "--jobs", "3"]
    proc = _spawn_sweep(tmp_path, args, subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # past the pool's initializer: two runs under way, one process idle
        pool = _children(proc.pid)
        assert len(pool) == 3, pool
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while any(_alive(p, t) for p, t in pool.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p, t in pool.items() if _alive(p, t)], "pool processes left running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # only if the test failed: its own group


@pytest.mark.slow
def test_a_second_process_on_the_same_sweep_is_refused_in_one_line(tmp_path: Path) -> None:
    """Two embedded runs of one sweep on one artifacts root would clear and rewrite each other's
    run directories: the second is refused, exit 2, while the first goes on."""
    args = ["sweep", *SWEEP[:4], "--seeds", "1-4", "--iterations", "40", "--jobs", "1"]
    first = _spawn_sweep(tmp_path, args, subprocess.PIPE)
    try:
        _line(first, "sweep sweep-", timeout_s=20)  # it holds the sweep's lock from here
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
        second = subprocess.run(
            [sys.executable, "-m", "soakq", *args, "--artifacts", "a"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert first.poll() is None, "the first sweep ended before the second was refused"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert second.returncode == 2, second.stderr
    (sweep,) = (tmp_path / "a" / "sweeps").iterdir()
    assert second.stderr == (
        f"error: sweep {sweep.name}: another process is running it in a right now\n"
    )
    assert second.stdout == ""


class _InProcess(Submitter):
    """Runs each submitted run at once, in this process (``run_one``, as a pool process does)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: list[tuple[str, dict]] = []

    def submit(self, spec) -> None:  # type: ignore[no-untyped-def]
        from soakq.sweep.local import run_one

        self.done.append(run_one(spec.as_json(), str(self.root)))

    def next_done(self):  # type: ignore[no-untyped-def]
        run_id, facts = self.done.pop(0)
        return run_id, RunFacts.from_json(facts)


def test_an_interrupt_while_the_sweeps_files_are_written_is_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C after the last run, while SWEEP.json and the rest are written: the same one line
    and exit 130 as during the runs (it ended silently, through typer, with no files)."""
    import soakq.sweep.report as report_module
    from soakq.cli.sweep import run_sweep

    plan = _plan(profiles=("aggressive",), modes=("calm",), seeds=(1,), holdout_seeds=())

    def cut(directory: Path, doc: dict) -> None:
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(report_module, "write_sweep", cut)
    code = run_sweep(plan, _InProcess(tmp_path), tmp_path / "sweep", {"execution": "distributed"})
    assert code == 130
    err = capsys.readouterr().err
    assert err == (
        f"sweep {plan.sweep_id}: interrupted after {plan.total_runs} runs; its submitted runs go "
        "on on the workers; the same command continues it (finished runs are not run again)\n"
    )
