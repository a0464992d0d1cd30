"""The sliding puzzle: solvable scrambles, a stateless replay, and rewards of hand-worked episodes."""

from __future__ import annotations

import random
from collections import deque

import pytest

from reinforge.data.readers import SlidingPuzzleDatasetConfig, sliding_puzzle
from reinforge.environments.sliding_puzzle import (
    SlidingPuzzleConfig,
    SlidingPuzzleEnvironment,
    as_board,
    movable_tiles,
    puzzle_text,
    render,
    scrambled_board,
    slide,
    solved_board,
)

START = [[1, 2, 3], [4, 5, 6], [0, 7, 8]]  # two moves from solved: slide 7, then 8


def distance_to_solved(board, limit=12):
    """Breadth-first search: the fewest moves that solve `board` (None beyond `limit`)."""
    goal, seen, queue = solved_board(len(board)), {board}, deque([(board, 0)])
    while queue:
        current, depth = queue.popleft()
        if current == goal:
            return depth
        if depth < limit:
            for tile in movable_tiles(current):
                nxt = slide(current, tile)
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, depth + 1))
    return None


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_every_scramble_is_solvable_within_its_depth_and_by_its_solution(depth):
    rng = random.Random(depth)
    for _ in range(40):
        board, solution = scrambled_board(rng, depth)
        assert board != solved_board()
        assert 1 <= distance_to_solved(board) <= depth
        for tile in solution:
            board = slide(board, tile)
            assert board is not None, "the solution's moves are legal"
        assert board == solved_board()


def test_the_reader_makes_records_with_the_configured_depth_and_disjoint_seeds():
    train = sliding_puzzle(SlidingPuzzleDatasetConfig(num_samples=20, scramble_depth=3))
    val = sliding_puzzle(SlidingPuzzleDatasetConfig(split="validation", num_samples=20, scramble_depth=3))
    assert len(train) == 20 and all(r["scramble_depth"] == 3 for r in train)
    assert [r["board"] for r in train] != [r["board"] for r in val]
    for record in train:
        board = as_board(record["board"])
        assert record["problem"] == puzzle_text(board) and render(board) in record["problem"]
        assert distance_to_solved(board) <= 3


def episode(*replies):
    meta = {"problem": puzzle_text(as_board(START)), "board": START}
    messages = [
        {"role": "user", "content": "Worked example: slide a tile. \\boxed{4}"},  # a worked example is not a move
        {"role": "assistant", "content": "\\boxed{4}"},
        {"role": "user", "content": meta["problem"]},
    ]
    for reply in replies:
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": "(observation)"})
    return messages[:-1], meta


def test_rewards_of_a_hand_worked_episode():
    env = SlidingPuzzleEnvironment(SlidingPuzzleConfig(solve_reward=1.0, invalid_move_penalty=0.1))
    turns = ["I slide \\boxed{7}.", "Now \\boxed{3}.", "no idea", "\\boxed{8}"]
    expected = [  # (reward, done, board after the turn)
        (0.0, False, "1 2 3\n4 5 6\n7 _ 8"),  # legal: 7 slides left into the gap
        (-0.1, False, "1 2 3\n4 5 6\n7 _ 8"),  # 3 is not next to the gap: penalised, board unchanged
        (-0.1, False, "1 2 3\n4 5 6\n7 _ 8"),  # no move at all
        (1.0, True, "1 2 3\n4 5 6\n7 8 _"),  # solved
    ]
    for k, (reward, done, board) in enumerate(expected):
        conversation, meta = episode(*turns[: k + 1])
        step = env.step([conversation], [meta])
        assert step.rewards == [pytest.approx(reward)] and step.done == [done] and step.correct == [done]
        assert step.info[0]["board"] == board
        if not done:
            assert board in step.observations[0]["content"] and step.observations[0]["role"] == "user"
    assert "Tile 3 cannot move.\nBoard:\n1 2 3\n4 5 6\n7 _ 8\nTiles next to the empty square: 5, 7, 8.\nYour move?" == env.step(*map(lambda x: [x], episode(*turns[:2]))).observations[0]["content"]
    assert sum(r for r, _, _ in expected) == pytest.approx(0.8)


def test_the_board_replays_identically_from_the_conversation_on_any_instance():
    conversation, meta = episode("\\boxed{7}", "\\boxed{5}")
    first = SlidingPuzzleEnvironment().step([conversation], [meta])
    again = SlidingPuzzleEnvironment().step([conversation, conversation], [meta, meta])  # a fresh worker, twice
    assert first.info[0]["board"] == again.info[0]["board"] == again.info[1]["board"] == "1 2 3\n4 _ 6\n7 5 8"
    assert first.rewards == again.rewards[:1] == again.rewards[1:]
