"""The mimicker's own accuracy during step 1: every epoch through the teacher's fine-tuned downstream head (a tiny
KS head trained by s3prl's runner on the tiny wav2vec2 teacher, synthetic corpus), on its dev split; weights kept
by that accuracy or by the validation MSE; the record says which epoch, which criterion and the curve. A
whole-stack mimicker is scored through a head on the teacher's last layer only (a perfect one scores what the
teacher scores); a head that weights every layer is refused for it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from superb_redundancy.data.splits import corpus_audio
from superb_redundancy.mimic.artifact import describe_artifact, load_mimic_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.mimic.eval_head import HeadEvaluator, probe_upstream
from superb_redundancy.mimic.modules import Mimicker
from superb_redundancy.distill.teacher_cache import TeacherCache, build_teacher_cache
from superb_redundancy.mimic.train import train_grid, train_mimicker
from superb_redundancy.pruning.curves.experiment import resolve_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TASK = "speech_commands"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def head(ks_experiment):
    """The eval head of a span: the session's KS experiment on the tiny wav2vec2 teacher (a weighted sum)."""
    return ks_experiment


@pytest.fixture(scope="module")
def last_head(ks_last_layer_experiment):
    """The eval head of a whole-stack mimicker: a KS head on the tiny teacher's last hidden state only."""
    return ks_last_layer_experiment


@pytest.fixture(scope="module")
def clips(corpus_root):
    return corpus_audio(corpus_root, TASK, "train")[:10]


@pytest.fixture(scope="module")
def cache(tiny_ckpts, clips, tmp_path_factory):
    return build_teacher_cache(tiny_ckpts["wav2vec2"], clips, tmp_path_factory.mktemp("c") / "cache",
                               layers=[0, 1, 2], progress=False)


@pytest.fixture(scope="module")
def evaluator(head, cache):
    return HeadEvaluator(head, cache, CPU)


@pytest.fixture(scope="module")
def last_evaluator(last_head, cache):
    return HeadEvaluator(last_head, cache, CPU)


class _TeacherLast(nn.Module):
    """Stands in for a whole-stack mimicker: every mimicking output is the teacher's last hidden state."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.n_layers, self.value = n_layers, None

    def forward(self, features, padding_mask=None, teacher_inputs=None):
        return [features] + [self.value] * self.n_layers


class _PerfectMimicker(nn.Module):
    """The step-1 probe of a whole-stack mimicker that reproduces the teacher's last layer exactly."""

    def __init__(self, probe, teacher):
        super().__init__()
        self.probe, self.teacher = probe, teacher
        self.probe.mimicker = _TeacherLast(len(probe.targets))

    def forward(self, wavs):
        self.probe.mimicker.value = self.teacher(wavs)["hidden_states"][-1]
        return self.probe(wavs)


def test_a_perfect_mimicker_scores_what_the_teacher_scores(cache, head, last_head, tmp_path):
    """Through every head the evaluator accepts for a whole-stack mimicker, the teacher's own last layer in m_N's
    place scores exactly the teacher's outcomes, item for item; a head whose Featurizer weights all positions (it
    would read the projected features where it learnt layers 0..L-1) is refused in one line."""
    config = MimicConfig.tiny(epochs=1)
    assert config.whole_stack(cache.num_layers)
    refused = []
    for expdir in (head, last_head):
        evaluator = HeadEvaluator(expdir, cache, CPU)
        try:
            train_mimicker(cache, config, tmp_path / f"{len(refused)}.pt", eval_head=evaluator, progress=False)
        except MimicError as error:
            assert len(str(error).splitlines()) == 1 and "-s last_hidden_state" in str(error)
            refused.append(expdir)
            continue
        teacher = evaluator.experiment.upstream
        probe = probe_upstream(cache, config, Mimicker.from_config(config, cache.hidden_size),
                               config.resolve_targets(cache.num_layers), None, CPU)
        perfect = _PerfectMimicker(probe, teacher)
        assert evaluator.accuracy(perfect) == evaluator.accuracy(teacher)
        assert evaluator.outcomes(perfect) == evaluator.outcomes(teacher) and evaluator.items > 0
    assert refused == [head]


def test_select_by_accuracy_keeps_the_best_epoch(tiny_ckpts, clips, head, last_head, tmp_path):
    configs = [MimicConfig.tiny(epochs=3), MimicConfig.tiny(kind="transformer", span=[1, 1], epochs=3)]
    heads = (last_head, head)  # the whole stack through the last layer's head; the span through the weighted sum
    paths = [train_grid(tiny_ckpts["wav2vec2"], clips, [config], tmp_path / str(n), eval_head=used, select_by="acc",
                        progress=False)[0] for n, (config, used) in enumerate(zip(configs, heads))]
    for path, used in zip(paths, heads):
        training = torch.load(path, weights_only=True)["training"]
        curve = [h["head_acc"] for h in training["history"]]
        assert len(curve) == 4 and all(0.0 <= a <= 1.0 for a in curve) and training["head_accuracy"] == curve
        best = max(range(1, 4), key=lambda epoch: (curve[epoch], -epoch))  # the earliest of equal accuracies
        assert training["best_epoch"] == best and training["best_accuracy"] == curve[best]
        assert training["best_loss"] == training["history"][best]["val_loss"]
        assert (training["select_by"], training["selected_by"]) == ("acc", "head accuracy")
        described = training["eval_head"]
        assert described["split"] == "dev" and described["task"] == TASK and described["items"] > 0
        assert described["checkpoint"] == str(resolve_checkpoint(used))  # dev-best, else the last states
        assert described["reads"] == ("the last hidden state" if used == last_head
                                      else "a weighted sum of the hidden states")
        # the artifact holds the selected epoch's weights: through the head again, the recorded accuracy
        upstream = load_mimic_artifact(path, compact=False).eval()
        assert HeadEvaluator(used, TeacherCache(path.parent / "teacher_cache"), CPU).accuracy(upstream) == \
            training["best_accuracy"]
        assert f"best head accuracy {curve[best]:.4g} (dev) at epoch {best}/3" in describe_artifact(path)


def test_select_by_mse_with_a_head_trains_the_same_weights(cache, last_evaluator, tmp_path):
    evaluator = last_evaluator
    config = MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=2)
    watched = train_mimicker(cache, config, tmp_path / "a.pt", eval_head=evaluator, progress=False)
    plain = train_mimicker(cache, config, tmp_path / "b.pt", progress=False)
    a, b = torch.load(watched, weights_only=True), torch.load(plain, weights_only=True)
    assert all(torch.equal(a["mimicker"][k], b["mimicker"][k]) for k in a["mimicker"])
    assert [h["val_loss"] for h in a["training"]["history"]] == [h["val_loss"] for h in b["training"]["history"]]
    assert a["training"]["selected_by"] == "validation loss" and a["training"]["best_accuracy"] is not None
    assert len(a["training"]["head_accuracy"]) == 3 and "head_accuracy" not in b["training"]
    # resuming with another selection is refused; with the same one it continues
    with pytest.raises(MimicError, match="only epochs may change on resume"):
        train_mimicker(cache, config, tmp_path / "a.pt", resume=True, progress=False)
    more = train_mimicker(cache, MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=3),
                          tmp_path / "a.pt", resume=True, eval_head=evaluator, progress=False)
    assert len(torch.load(more, weights_only=True)["training"]["head_accuracy"]) == 4


class Identity(nn.Module):
    def forward(self, x, padding_mask=None):
        return x


def test_identity_span_through_the_head_is_the_pruned_teacher(tiny_ckpts, evaluator, tmp_path):
    """Through the trained Featurizer and head, the identity span [1, 1] scores item for item what the teacher
    with layer 1 dropped scores (pruning_curves' end-to-end reference)."""
    from superb_redundancy.pruning.curves.evaluate import evaluate_upstream
    from superb_redundancy.pruning.curves.shared_forward import layers_dropped

    upstream = load_mimic_artifact(init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(span=[1, 1]),
                                                 tmp_path / "s.pt")).eval()
    upstream.mimicker.layers[0] = Identity()
    experiment = evaluator.experiment
    ours = evaluate_upstream(experiment, upstream, "dev", progress=False)["acc"]
    with layers_dropped(experiment.expert, experiment.family, [1]) as pruned:
        reference = evaluate_upstream(experiment, pruned, "dev", progress=False)["acc"]
    assert ours == reference and ours == evaluator.outcomes(upstream)


def test_eval_head_errors(head, last_head, tiny_ckpts, tiny_preln_wav2vec2, clips, tmp_path, capsys):
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    other = write_tiny_checkpoint("wav2vec2", tmp_path / "other.pt", ModelConfig(), seed=9)
    foreign = build_teacher_cache(other, clips[:3], tmp_path / "c1", progress=False)
    with pytest.raises(MimicError, match=r"was trained on .*tiny_wav2vec2.pt \(sha256 .*not on the cache's teacher"):
        HeadEvaluator(head, foreign, CPU)
    deeper = build_teacher_cache(tiny_preln_wav2vec2, clips[:3], tmp_path / "c2", progress=False)
    with pytest.raises(MimicError, match=r"trained on a 3-layer wav2vec2, not on the cache's teacher \(4-layer"):
        HeadEvaluator(head, deeper, CPU)
    with pytest.raises(MimicError, match="eval head .*experiment not found"):
        HeadEvaluator(tmp_path / "nope", foreign, CPU)
    with pytest.raises(MimicError, match="select_by='acc' needs an eval head"):
        train_mimicker(foreign, MimicConfig.tiny(), tmp_path / "x.pt", select_by="acc", progress=False)

    from superb_redundancy.cli import main

    config = tmp_path / "c.yaml"
    MimicConfig.tiny(epochs=1).to_yaml(config)
    capsys.readouterr()  # what loading the heads above printed (s3prl's Featurizer)
    code = main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", *map(str, clips[:3]),
                 "--config", str(config), "--select-by", "acc", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "select_by='acc' needs an eval head" in err[0]
    code = main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", *map(str, clips[:4]),
                 "--config", str(config), "--eval-head", str(head), "--select-by", "acc", "--no-progress",
                 "--output-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "weights the teacher's 4 hidden states" in err[-1] and "-s last_hidden_state" in err[-1]
    assert not (tmp_path / "w" / "teacher_cache").exists()  # refused before the teacher pass
    assert main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", *map(str, clips[:4]),
                 "--config", str(config), "--eval-head", str(last_head), "--select-by", "acc", "--no-progress",
                 "--output-dir", str(tmp_path / "o")]) == 0
    assert "best head accuracy" in capsys.readouterr().out
