"""The leaderboard from a fixture set of records: rows with their evidence, retention, chance, Pareto, files, and
the HTML page in a real browser (headless Chromium, where installed): every column of every table sorts both ways."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from superb_redundancy.core.variant import MimicSetup, VariantDescription, VariantKind
from superb_redundancy.statistics.evidence import TestItems, wilson
from superb_redundancy.results.leaderboard.frame import pareto_mask, records_frame
from superb_redundancy.results.leaderboard.page import write_leaderboard
from superb_redundancy.results.leaderboard.profiles import Profile
from superb_redundancy.results.leaderboard.tables import task_tables
from superb_redundancy.results.records import Reading, RunRecord


def accuracy_items(correct: list[int], labels: int = 4) -> list[dict]:
    ids = tuple(f"utt{i:03d}" for i in range(len(correct)))
    truth = tuple(str(i % labels) for i in range(len(ids)))
    return [TestItems("accuracy", ids, correct=tuple(correct), truth=truth).to_dict()]


def wer_items(errors: list[int], words: int = 10) -> list[dict]:
    ids = tuple(f"utt{i:03d}" for i in range(len(errors)))
    return [TestItems("wer", ids, errors=tuple(errors), ref_words=(words,) * len(errors)).to_dict()]


#: the base checkpoint, and what the variants made of it are
BASE = VariantDescription(VariantKind.STOCK, family="wav2vec2", base="/models/base.pt", base_sha256="base-sha")
PRUNED = VariantDescription(VariantKind.PRUNED, family="wav2vec2", base="/models/base.pt", base_sha256="base-sha",
                            drop_layers=(3, 4, 5), objective="knn-bi")


def mimic(**setup) -> VariantDescription:
    return VariantDescription(VariantKind.MIMIC, family="wav2vec2", base="/models/base.pt", base_sha256="base-sha",
                              mimic=MimicSetup(**setup))


def record(task, upstream, items, variant, description=BASE, reading=Reading(), metric="acc", higher=True, seed=1):
    folds = [TestItems.from_dict(i) for i in items]
    value = sum(f.value for f in folds) / len(folds)
    return RunRecord(record_id=f"{variant}-{task}-{seed}", expdir=f"/exp/{variant}/{task}/{seed}", task=task,
                     upstream=upstream, upstream_ckpt=None, upstream_model_config=None,
                     upstream_sha256="base-sha" if description.kind is VariantKind.STOCK else None,
                     model_config_sha256=None, variant=variant, metric=metric, value=value, higher_is_better=higher,
                     seed=seed, config=None, config_sha256=None, step=30, evaluated_at="2026-01-01T00:00:00",
                     description=description, reading=reading, items=items, n=sum(f.n for f in folds))


N = 200


@pytest.fixture
def records():
    base = [1] * 190 + [0] * 10           # 0.95
    pruned1 = [1] * 180 + [0] * 20        # 0.90: misses 10 items the base gets right
    pruned2 = [1] * 186 + [0] * 14        # 0.93
    guess = [1, 0, 0, 0] * 50             # 0.25 with 4 balanced labels: chance
    return [
        record("speech_commands", "wav2vec2_local", accuracy_items(base), "base"),
        record("speech_commands", "pruned_wav2vec2", accuracy_items(pruned1), "pruned", description=PRUNED, seed=1),
        record("speech_commands", "pruned_wav2vec2", accuracy_items(pruned2), "pruned", description=PRUNED, seed=2),
        record("speech_commands", "mimic_local", accuracy_items(guess), "mimic",
               description=mimic(kind="linear", n_layers=1, z=32, training="mimicking")),
        record("asr", "wav2vec2_local", wer_items([1] * 50), "base", metric="wer", higher=False),
        record("asr", "pruned_wav2vec2", wer_items([2] * 50), "pruned", description=PRUNED, metric="wer", higher=False),
    ]


PROFILES = {"base": Profile(95_000_000, 6.9e9, 100.0, 99.0, 101.0),
            "pruned": Profile(73_700_000, 5.8e9, 80.0, 79.0, 81.0),
            "mimic": Profile(5_000_000, 0.5e9, 10.0, 9.0, 11.0)}


def test_rows_carry_n_interval_seeds_and_chance(records):
    frame = records_frame(records, PROFILES)
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    base = ks.loc["base"]
    assert base["value"] == pytest.approx(0.95) and base["n"] == N and base["seeds"] == 1
    assert (base["low"], base["high"]) == pytest.approx(wilson(190, N))
    assert base["chance"] == pytest.approx(0.25) and base["uniform"] == pytest.approx(1 / 12)
    pruned = ks.loc["pruned"]
    assert pruned["value"] == pytest.approx(0.915) and pruned["seeds"] == 2  # mean over seeds
    assert pruned["seed_sd"] == pytest.approx(0.0212132, abs=1e-6)
    assert pruned["low"] < 0.915 < pruned["high"]
    assert bool(ks.loc["mimic", "at_chance"]) and not bool(pruned["at_chance"])


def test_retention_both_directions_with_intervals(records):
    frame = records_frame(records, PROFILES)
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    assert ks.loc["pruned", "retention"] == pytest.approx(100 * 0.915 / 0.95)
    assert ks.loc["pruned", "retention_low"] < ks.loc["pruned", "retention"] < ks.loc["pruned", "retention_high"]
    assert ks.loc["pruned", "difference"] == pytest.approx(0.915 - 0.95)
    assert ks.loc["base", "retention"] == pytest.approx(100)
    asr = frame[frame.task == "asr"].set_index("variant")
    # WER: the share of the base's word accuracy kept, 100 * (100 - 20) / (100 - 10)
    assert asr.loc["pruned", "retention"] == pytest.approx(100 * 80 / 90)
    assert asr.loc["pruned", "difference"] == pytest.approx(10.0)  # WER points, positive: worse
    # every utterance went from 1 to 2 errors: no resample can undo it
    assert asr.loc["pruned", "retention_high"] < 100 and not bool(asr.loc["pruned", "indistinguishable"])


def test_no_share_of_a_base_at_chance(records):
    """A base at chance (WER ~98) makes "% of base" a ratio of two noises: the table says so instead of printing it;
    the difference in WER points keeps its interval."""
    records = [r for r in records if r.task != "asr"] + [
        record("asr", "wav2vec2_local", wer_items([10] * 49 + [9]), "base", metric="wer", higher=False),
        record("asr", "pruned_wav2vec2", wer_items([10] * 48 + [11] * 2), "pruned", description=PRUNED, metric="wer",
               higher=False)]
    frame = records_frame(records, PROFILES)
    asr = frame[frame.task == "asr"].set_index("variant")
    assert bool(asr.loc["base", "at_chance"]) and bool(asr.loc["pruned", "base_at_chance"])
    assert asr[["retention", "retention_low", "retention_high"]].isna().all().all()
    assert asr.loc["pruned", "difference"] == pytest.approx(100 * 502 / 500 - 100 * 499 / 500)
    table = task_tables(frame)["asr"].set_index("upstream")
    assert set(table["% of base [95% CI]"]) == {"- (base at chance)"}
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    assert not ks.base_at_chance.any() and ks.loc["pruned", "retention"] == pytest.approx(100 * 0.915 / 0.95)


def test_pareto_never_marks_a_point_at_chance(records):
    frame = records_frame(records, PROFILES)
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    # the mimic is by far the cheapest, but at chance: not on any frontier
    assert not any(bool(ks.loc["mimic", f"pareto_{axis}"]) for axis in ("params", "macs", "latency_ms"))
    assert bool(ks.loc["pruned", "pareto_macs"]) and bool(ks.loc["base", "pareto_macs"])  # cheaper vs better
    table = task_tables(frame)["speech_commands"].set_index("upstream")
    assert "<=chance" in table.loc["mimic linear N=1 z=32", "marks"]
    assert table.loc["mimic linear N=1 z=32", "Pareto (MACs)"] == ""


def test_pareto_mask():
    assert pareto_mask([0.9, 0.8, 0.95, 0.85], [5, 4, 6, 5], True) == [True, True, True, False]
    assert pareto_mask([10, 12], [2, 1], False) == [True, True]
    assert pareto_mask([10, 12], [1, 2], False) == [True, False]
    assert pareto_mask([0.9, 0.99], [5, 1], True, eligible=[True, False]) == [True, False]
    assert pareto_mask([0.9, 0.8], [5, None], True) == [True, False]


def test_files_are_written(records, tmp_path):
    frame = records_frame(records, PROFILES)
    written = write_leaderboard(frame, tmp_path, timing={"machine": "test cpu", "device": "cpu", "threads": 1,
                                                         "rounds": 30, "warmup": 5, "torch": "x",
                                                         "timer": "perf_counter"})
    for name in ("overview.md", "speech_commands.md", "speech_commands.csv", "speech_commands.tex",
                 "speech_commands.png", "asr.png", "index.html"):
        assert written[name].is_file(), name
    page = (tmp_path / "index.html").read_text()
    assert "sortable" in page and "data:image/png;base64," in page and "knn-bi" in page
    assert "test cpu" in page and "30 rounds" in page and "Wilson" in page
    md = (tmp_path / "speech_commands.md").read_text()
    assert "| pruned_wav2vec2 drop [3, 4, 5] (knn-bi)" in md and "0.950 [0.910, 0.973]" in md


# Clicks every header twice and checks the column's order after each click (numbers by value, text by text,
# as the page's own sort does); the verdicts go into a <pre> that --dump-dom prints.
_CHECK = """<script>
const out = [];
document.querySelectorAll('table.sortable').forEach((table, t) => {
  table.querySelectorAll('thead th').forEach((th, col) => {
    for (let k = 0; k < 2; k++) {
      th.click();
      const keys = [...table.tBodies[0].rows].map(r => { const v = r.cells[col].innerText.trim(), n = parseFloat(v);
                                                        return isNaN(n) ? v : n; });
      let ok = true;
      for (let i = 1; i < keys.length; i++) {
        const a = keys[i - 1], b = keys[i];
        if (typeof a === typeof b && (th.dataset.asc === '1' ? a > b : a < b)) ok = false;
      }
      out.push(`table${t} column${col} ${th.dataset.asc === '1' ? 'ascending' : 'descending'} ${ok ? 'OK' : 'BAD'}`);
    }
  });
});
const pre = document.createElement('pre'); pre.id = 'verdicts'; pre.textContent = out.join('\\n');
document.body.appendChild(pre);
</script>"""


def test_every_column_sorts_both_ways_in_chromium(records, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if os.environ.get("CI"):  # scripts/test.sh installs it there: a skip would hide the page's only browser test
            pytest.fail("no Chromium on a CI machine: scripts/chromium_setup.sh should have installed it")
        pytest.skip("no Chromium here (apt-get install chromium, or bash scripts/chromium_setup.sh as root)")
    write_leaderboard(records_frame(records, PROFILES), tmp_path)
    page = (tmp_path / "index.html").read_text()
    (tmp_path / "check.html").write_text(page.replace("</body>", _CHECK + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (tmp_path / "check.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    verdicts = dom.split("<pre id=\"verdicts\">", 1)[1].split("</pre>", 1)[0].splitlines()
    tables = page.count("class='sortable'") + page.count('class="dataframe sortable"')
    assert tables >= 3 and len({v.split()[0] for v in verdicts}) == tables  # the overview and one per task
    assert verdicts and all(v.endswith("OK") for v in verdicts), [v for v in verdicts if not v.endswith("OK")]


def test_profiles_are_cached_per_variant_and_machine(tiny_ckpts, tiny_preln_wav2vec2, tmp_path, hub, monkeypatch):
    """A rebuild times only the variants not timed before (a model of the same content, timed the same way on the
    same machine, is not timed again); a changed checkpoint is timed again, and so is every variant with retime."""
    import shutil

    from superb_redundancy.results.leaderboard import profiles
    from superb_redundancy.results.leaderboard.profiles import profile_variants

    def tiny(variant: str, ckpt) -> RunRecord:
        return RunRecord(record_id=variant, expdir=f"/exp/{variant}", task="ks", upstream="wav2vec2_local",
                         upstream_ckpt=str(ckpt), upstream_model_config=None, upstream_sha256=None,
                         model_config_sha256=None, variant=variant, metric="acc", value=0.9, higher_is_better=True,
                         seed=1, config=None, config_sha256=None, step=1, evaluated_at="2026-01-01T00:00:00")

    timed = []
    real = profiles.time_variants
    monkeypatch.setattr(profiles, "time_variants", lambda records, *a: timed.append(
        sorted({r.variant for r in records})) or real(records, *a))
    base, copy = tiny_ckpts["wav2vec2"], tmp_path / "copy.pt"
    shutil.copy(base, copy)
    kwargs = {"repeats": 2, "max_passes": 1, "warmup": 0, "cache": tmp_path / "profiles"}
    first, info = profile_variants([tiny("a", base)], **kwargs)
    assert timed == [["a"]] and info["cached"] == 0 and first["a"].latency_ms > 0
    again, info = profile_variants([tiny("a", base), tiny("b", copy)], **kwargs)  # b: a's bytes
    assert timed == [["a"]] and info["cached"] == 2 and again == {"a": first["a"], "b": first["a"]}
    shutil.copy(tiny_preln_wav2vec2, copy)  # another model in b's file
    again, info = profile_variants([tiny("a", base), tiny("b", copy)], **kwargs)
    assert timed[1:] == [["b"]] and info["cached"] == 1 and again["b"] != first["a"]
    profile_variants([tiny("a", base)], **kwargs, retime=True)
    monkeypatch.setattr(profiles, "_machine", lambda: "another machine")
    profile_variants([tiny("a", base)], **kwargs)
    assert timed[2:] == [["a"], ["a"]]


def test_variants_of_one_model_are_timed_once(tiny_ckpts, monkeypatch):
    """The base and a head on its last layer are one model: timed once, both rows carry that timing."""
    from superb_redundancy.compute import latency
    from superb_redundancy.results.leaderboard.profiles import time_variants

    def tiny(variant: str) -> RunRecord:
        return RunRecord(record_id=variant, expdir=f"/exp/{variant}", task="ks", upstream="wav2vec2_local",
                         upstream_ckpt=str(tiny_ckpts["wav2vec2"]), upstream_model_config=None, upstream_sha256=None,
                         model_config_sha256=None, variant=variant, metric="acc", value=0.9, higher_is_better=True,
                         seed=1, config=None, config_sha256=None, step=1, evaluated_at="2026-01-01T00:00:00")

    timed, real = [], latency.interleaved_latency
    monkeypatch.setattr(latency, "interleaved_latency", lambda models, **kw: timed.append(sorted(models))
                        or real(models, **kw))
    profiles, _ = time_variants([tiny("base"), tiny("reference: head on the last layer")], repeats=2,
                                max_passes=1, warmup=0)
    assert timed == [["base"]] and profiles["base"] == profiles["reference: head on the last layer"]


def test_step2_and_reference_rows_are_labelled(records):
    """A mimic row says which step 2 trained its head; a head on the teacher's last layer is a reference row, with
    its retention against the base, and is never taken for the base."""
    last = [1] * 188 + [0] * 12
    extra = [
        record("speech_commands", "wav2vec2_local", accuracy_items(last), "base s:last_hidden_state",
               reading=Reading(reads="last_hidden_state")),
        record("speech_commands", "mimic_local", accuracy_items([1, 1, 0, 0] * 50), "mimic-paper",
               description=mimic(kind="linear", n_layers=1, z=32, training="mimicking"),
               reading=Reading(reads="last_hidden_state", step2="paper")),
    ]
    extra.append(record("speech_commands", "mimic_local", accuracy_items([1, 1, 1, 0] * 50), "ceiling",
                        description=mimic(kind="transformer", n_layers=1, z=512, training="none",
                                          baseline="ceiling (trained with labels only, on the front end)"),
                        reading=Reading(reads="last_hidden_state", step2="paper")))
    records[3].reading = Reading(step2="weighted_sum")
    frame = records_frame(records + extra, {**PROFILES, "base s:last_hidden_state": PROFILES["base"],
                                            "mimic-paper": PROFILES["mimic"], "ceiling": PROFILES["mimic"]})
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    assert ks.loc["mimic", "label"] == "mimic linear N=1 z=32, step 2: weighted sum (s3prl)"
    assert ks.loc["mimic-paper", "label"] == "mimic linear N=1 z=32, step 2: paper (m_N, teacher's head, early stopping)"
    assert ks.loc["ceiling", "label"] == ("reference: ceiling, transformer N=1 z=512 trained with labels on the front "
                                          "end, step 2: paper (m_N, teacher's head, early stopping)")
    reference = ks.loc["base s:last_hidden_state"]
    assert reference["label"] == "reference: head on wav2vec2's last hidden state" and not reference["is_base"]
    assert bool(ks.loc["base", "is_base"]) and reference["retention"] == pytest.approx(100 * 188 / 190)
