"""CRD's cross-modal NYU experiment end to end on the synthetic rooms: RGB teacher -> depth student without
labels -> segmentation on the frozen depth features -> fine-tuning; one pipeline config per table row."""
import pytest
import torch

from densekd.config import load_config
from densekd.pipelines import PipelineRunner, load_pipeline
from tests.conftest import ROOT

SHRINK = ["data.batch_size=2", "data.val_batch_size=2", "data.num_workers=0"]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("row", ["random_init", "kd", "kd_at", "fitnet", "crd"])
def test_every_row_of_the_table_has_a_pipeline(row):
    pipe = load_pipeline(ROOT / f"configs/pipelines/nyu_crossmodal/{row}.py", synthetic=True, cli_options=SHRINK)
    assert pipe.names[-2:] == ["probe", "finetune"]
    probe = pipe.stage("probe").cfg
    assert probe["student_input"] == "depth" and probe["freeze"] == ["encoder"] and probe["model"]["in_channels"] == 1
    if row != "random_init":
        pre = pipe.stage("pretrain").cfg
        assert pre["task"]["type"] == "representation" and pre["student_input"] == "depth"
        assert pre["teacher"]["input"] == "image" and pre["model"]["in_channels"] == 1
        assert probe["model"]["pretrained"].endswith("pretrain/checkpoints/last.pth")


def test_crd_row_hands_the_depth_encoder_to_a_frozen_probe_then_fine_tunes(tmp_path):
    work = tmp_path / "crd"
    pipe = load_pipeline(ROOT / "configs/pipelines/nyu_crossmodal/crd.py", synthetic=True, work_dir=str(work),
                         cli_options=SHRINK)
    results = PipelineRunner(pipe, device="cpu", max_iters=2, log=lambda _m: None).run()
    assert [r.status for r in results] == ["trained"] * 4
    pre, probe, fine = (weights(work / s / "checkpoints/last.pth") for s in ("pretrain", "probe", "finetune"))
    assert "fc.weight" in pre and pre["conv1.weight"].shape == (64, 1, 7, 7)  # the depth student
    encoder = [k for k in probe if k.startswith("encoder.")]
    assert encoder and all(torch.equal(probe[k], pre[k[len("encoder."):]]) for k in encoder)  # frozen features
    assert any(not torch.equal(fine[k], probe[k]) for k in encoder)  # fine-tuning trains the encoder
    summary = load_config(work / "pretrain/config.py")
    assert summary["distill"][0]["type"] == "CRD" and summary["data"]["train"]["sampling"] == "any"
    assert not (work / "pretrain/checkpoints/best.pth").exists()  # label-free: no metric, no best
