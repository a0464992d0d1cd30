"""The prompt stream: full batches, per-epoch reshuffling, and exact resumption."""

from __future__ import annotations

import itertools

import pytest

from reinforge.core.errors import ReinforgeError
from reinforge.data.loader import PromptLoader

PROMPTS = [f"p{i}" for i in range(10)]  # batch 3: 3 batches per epoch, one prompt left over


def take(loader: PromptLoader[str], k: int) -> list[list[str]]:
    return list(itertools.islice(loader, k))


def test_epochs_are_fresh_permutations_cut_into_full_batches() -> None:
    loader = PromptLoader(PROMPTS, 3, seed=0)
    assert len(loader) == 3
    epoch0, epoch1 = take(loader, 3), take(loader, 3)
    for epoch in (epoch0, epoch1):
        served = [p for batch in epoch for p in batch]
        assert all(len(batch) == 3 for batch in epoch)
        assert len(set(served)) == 9 and set(served) <= set(PROMPTS)
    assert epoch0 != epoch1  # reshuffled
    assert loader.epoch == 1 and loader.batch_in_epoch == 3
    assert take(PromptLoader(PROMPTS, 3, seed=0), 6) == epoch0 + epoch1  # seeded
    assert take(PromptLoader(PROMPTS, 3, seed=1), 3) != epoch0


def test_without_shuffle_the_order_is_kept() -> None:
    loader = PromptLoader(PROMPTS, 4, seed=0, shuffle=False)
    assert take(loader, 3) == [PROMPTS[0:4], PROMPTS[4:8], PROMPTS[0:4]]


@pytest.mark.parametrize("k", [0, 2, 3, 5, 7])
def test_resume_continues_with_the_next_unseen_batch(k: int) -> None:
    running = PromptLoader(PROMPTS, 3, seed=42)
    take(running, k)
    state = running.state_dict()
    expected = take(running, 5)  # what the uninterrupted run gets next

    resumed = PromptLoader(list(PROMPTS), 3, seed=42)
    resumed.load_state_dict(state)
    assert take(resumed, 5) == expected


def test_resume_refuses_different_data_or_settings() -> None:
    state = PromptLoader(PROMPTS, 3, seed=42).state_dict()
    with pytest.raises(ReinforgeError, match="num_prompts: 10 then, 9 now"):
        PromptLoader(PROMPTS[:9], 3, seed=42).load_state_dict(state)
    with pytest.raises(ReinforgeError, match="seed: 42 then, 7 now"):
        PromptLoader(PROMPTS, 3, seed=7).load_state_dict(state)


def test_too_few_prompts_for_a_batch() -> None:
    with pytest.raises(ReinforgeError, match="only 2 prompts for batches of 3"):
        PromptLoader(PROMPTS[:2], 3, seed=0)


@pytest.mark.parametrize("consumed", [0, 2, 3, 4])  # 3 = at an epoch's end, before the next epoch begins
@pytest.mark.parametrize("shuffle", [True, False])
def test_peek_reads_ahead_across_epochs_without_moving_the_saved_position(consumed: int, shuffle: bool) -> None:
    loader = PromptLoader(PROMPTS, 3, seed=5, shuffle=shuffle)
    take(loader, consumed)
    before = loader.state_dict()
    ahead = [loader.peek(k) for k in range(7)]  # more than two epochs ahead
    assert list(itertools.islice(loader.lookahead(), 7)) == ahead
    assert loader.state_dict() == before
    # What was read ahead is exactly what the stream then serves, and a loader resumed from the saved
    # position reads the same ahead: each prompt is served once, whoever looked first.
    resumed = PromptLoader(PROMPTS, 3, seed=5, shuffle=shuffle)
    resumed.load_state_dict(before)
    assert [resumed.peek(k) for k in range(7)] == ahead
    assert take(loader, 7) == ahead


def test_peek_refuses_to_look_back() -> None:
    with pytest.raises(ValueError, match="ahead must be >= 0"):
        PromptLoader(PROMPTS, 3, seed=0).peek(-1)
