import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from reidquant.errors import ReidQuantError, run_for_user
from reidquant.rulelog import run_rule
from reidquant.variants.base import stage


class BrokenImages(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise ReidQuantError(f"image {index}: cannot read it")


def test_user_error_in_a_dataloader_worker_is_one_line(capsys):
    def load():
        return list(DataLoader(BrokenImages(), num_workers=1))

    with pytest.raises(SystemExit) as exit_:
        run_for_user(load)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "reidquant: error: image 0: cannot read it\n"


def test_other_errors_keep_their_traceback():
    def bug():
        raise ValueError("reidquant got this wrong, ReidQuantError or not")

    with pytest.raises(ValueError):
        run_for_user(bug)


def test_a_failed_stage_is_one_line_and_its_cause_goes_to_the_log(tmp_path, capfd):
    def convert():
        with stage("ov_int8", "NNCF calibration"):
            torch.zeros(2) @ torch.zeros(3)

    log = tmp_path / "rule.log"
    with pytest.raises(SystemExit):
        run_rule(str(log), convert)
    err = capfd.readouterr().err
    assert err.startswith("reidquant: error: variant ov_int8: NNCF calibration failed:")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" in log.read_text() and "torch.zeros(2) @ torch.zeros(3)" in log.read_text()
