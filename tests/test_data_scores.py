"""Score-file loaders map each database's published scale to [1, 5]."""
from __future__ import annotations

import pytest

from conftest import shared_data
from uare.data import scores


def test_small_files_of_each_layout_map_to_one_to_five(tmp_path):
    (tmp_path / "SPAQ.txt").write_text("dis_img_path,dis_type,score\nSPAQ/a.jpg,Authentic,0\n"
                                      "SPAQ/b.jpg,Authentic,100\nSPAQ/c.jpg,Authentic,50\n")
    got = scores.load_scores("spaq", tmp_path / "SPAQ.txt", tmp_path)
    assert [s.mos for s in got] == [1.0, 5.0, 3.0]
    assert got[0].image == tmp_path / "SPAQ/a.jpg"
    (tmp_path / "CSIQ.txt").write_text("dis_img_path,dis_type,ref_img_path,score\n"
                                      "CSIQ/d.png,AWGN,CSIQ/r.png,0.0\nCSIQ/e.png,AWGN,CSIQ/r.png,1.0\n")
    got = scores.load_scores("csiq", tmp_path / "CSIQ.txt", tmp_path)
    assert [s.mos for s in got] == [5.0, 1.0]  # DMOS: lower is better
    assert got[0].reference == tmp_path / "CSIQ/r.png"


def test_root_may_be_the_dataset_folder_itself(tmp_path):
    (tmp_path / "SPAQ").mkdir()
    (tmp_path / "SPAQ" / "a.jpg").write_bytes(b"x")
    (tmp_path / "s.txt").write_text("dis_img_path,dis_type,score\nSPAQ/a.jpg,Authentic,40\n")
    got = scores.load_scores("spaq", tmp_path / "s.txt", tmp_path / "SPAQ", require_images=True)
    assert got[0].image == tmp_path / "SPAQ" / "a.jpg"


def test_bad_rows_and_missing_images_name_the_file(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("dis_img_path,dis_type,score\nx.jpg,A,not-a-number\n")
    with pytest.raises(scores.ScoreFileError, match=r"bad.txt: line 2"):
        scores.load_scores("spaq", f, tmp_path)
    f.write_text("dis_img_path,dis_type,score\nx.jpg,A,3\n")
    with pytest.raises(scores.ScoreFileError, match="missing"):
        scores.load_scores("spaq", f, tmp_path, require_images=True)
    with pytest.raises(scores.ScoreFileError, match="unknown dataset"):
        scores.load_scores("imagenet", f, tmp_path)


@pytest.mark.data
@pytest.mark.parametrize("name,stem", [(k, v[0]) for k, v in scores.DATASETS.items() if k != "agiqa3k"])
def test_published_files_load_into_range(name, stem, tmp_path):
    path = shared_data("iqa_scores", "icbcbicc_IQA-Dataset", "csv", f"{stem}.txt")
    got = scores.load_scores(name, path, tmp_path)
    assert len(got) > 500
    mos = [s.mos for s in got]
    assert 1.0 <= min(mos) and max(mos) <= 5.0 and max(mos) - min(mos) > 1.5


@pytest.mark.data
def test_official_koniq_matches_the_one_to_five_file(tmp_path):
    official = scores.load_scores("koniq10k", shared_data("iqa_scores", "KonIQ-10k_official",
                                                          "koniq10k_distributions_sets.csv"), tmp_path)
    flat = scores.load_scores("koniq10k", shared_data("iqa_scores", "icbcbicc_IQA-Dataset", "csv",
                                                      "KonIQ-10k.txt"), tmp_path)
    by_name = {s.image.name: s.mos for s in flat}
    diffs = [abs(by_name[s.image.name] - s.mos) for s in official if s.image.name in by_name]
    assert len(diffs) > 10000 and max(diffs) < 0.01
    assert {s.split for s in official} == {"training", "validation", "test"}


@pytest.mark.data
def test_agiqa_loads(tmp_path):
    got = scores.load_scores("agiqa3k", shared_data("iqa_scores", "AGIQA-3k", "data.csv"), tmp_path)
    assert len(got) == 2982 and all(1 <= s.mos <= 5 for s in got)
