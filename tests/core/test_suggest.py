""""Did you mean": ranked by edit distance over the whole name, then by common prefix; keyword arguments are
matched against the shared settings and the backend's options together."""

from __future__ import annotations

import pytest

import reinforge as rf
from reinforge.core.suggest import closest, edit_distance

HF_OPTIONS = ["device", "max_batch_size", "max_batch_tokens", "share_prompt_prefill", "reserve_kv_cache", "attn_implementation"]
SAMPLING = ["max_new_tokens", "temperature", "top_p", "top_k", "stop_strings", "stop_token_ids"]


def test_edit_distance_by_hand():
    assert edit_distance("max_new_token", "max_new_tokens") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("same", "same") == 0


def test_the_closest_name_is_the_fewest_edits_away_not_the_longest_shared_run():
    assert closest("max_new_token", [*HF_OPTIONS, *SAMPLING]) == "max_new_tokens"
    assert closest("max_new_token", HF_OPTIONS) == "max_batch_tokens"  # among the backend's own only: the old answer
    assert closest("reinforce_plus_plus", ["grpo", "rloo", "dr_grpo", "reinforce_pp"], cutoff=0.5) == "reinforce_pp"
    assert closest("zzz", ["grpo", "sft"]) is None


def test_equal_distances_prefer_the_longer_common_prefix():
    assert edit_distance("val_perid", "val_period") == edit_distance("val_perid", "xal_perid") == 1
    assert closest("val_perid", ["xal_perid", "val_period"]) == "val_period"  # both 1 edit away; 'val_peri' in common
    assert closest("val_perid", ["val_period", "xal_perid"]) == "val_period"  # whatever the order


def test_a_misspelt_sampling_keyword_suggests_the_sampling_setting():
    with pytest.raises(rf.ReinforgeError) as err:
        rf.backends.HFGeneration(max_new_token=40)
    message = str(err.value)
    assert "unknown key 'max_new_token'; did you mean 'max_new_tokens'?" in message
    assert "max_batch_tokens'?" not in message and "options of 'hf': device" in message
    with pytest.raises(rf.ReinforgeError, match="unknown key 'learning_rate'"):
        rf.backends.DTensorTraining("m/", learning_rate=1e-3)
    with pytest.raises(rf.ReinforgeError, match="unknown key 'lr_'; did you mean 'lr'"):
        rf.backends.DTensorTraining("m/", lr_=1e-3)
