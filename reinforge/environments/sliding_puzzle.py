"""The `sliding_puzzle` environment: an 8-puzzle (3x3 sliding tiles) played one move per turn.

Every turn the model names one tile next to the empty square, in `\\boxed{}`, and the tile slides
into it. The environment keeps no state: it replays every move of the conversation from the
starting board in `metadata["board"]` (the `sliding_puzzle` dataset reader's boards), so the same
conversation gives the same answer on any worker and on a retry. Every board it shows comes with
the tiles next to the empty square (`board_text`). Solving the board ends the
episode with `solve_reward`; a move that is unreadable or illegal costs `invalid_move_penalty` and
the board stays as it was. `correct` means solved.

Boards are made by random legal moves from the solved board (`scrambled_board`), so every board
is solvable in at most `scramble_depth` moves.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import attrs
from attrs import validators as v

from reinforge.core.config import doc
from reinforge.core.interfaces import EnvironmentStep

Board = tuple[tuple[int, ...], ...]  # rows of tile numbers, 0 = the empty square
_BOXED_NUMBER = re.compile(r"\\boxed\{\s*(\d+)\s*\}")


def solved_board(size: int = 3) -> Board:
    tiles = [*range(1, size * size), 0]
    return tuple(tuple(tiles[r * size : (r + 1) * size]) for r in range(size))


def as_board(value: Sequence[Sequence[int]]) -> Board:
    return tuple(tuple(int(x) for x in row) for row in value)


def render(board: Board) -> str:
    """The board as the model reads it: one row per line, `_` for the empty square."""
    return "\n".join(" ".join(str(x) if x else "_" for x in row) for row in board)


def movable_tiles(board: Board) -> list[int]:
    """The tiles next to the empty square (the legal moves)."""
    r, c = _blank(board)
    size = len(board)
    return sorted(board[r + dr][c + dc] for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= r + dr < size and 0 <= c + dc < size)


def slide(board: Board, tile: int) -> Board | None:
    """The board after sliding `tile` into the empty square; None when the move is illegal."""
    if tile not in movable_tiles(board):
        return None
    grid = [list(row) for row in board]
    (br, bc), (tr, tc) = _blank(board), _find(board, tile)
    grid[br][bc], grid[tr][tc] = tile, 0
    return tuple(tuple(row) for row in grid)


def scrambled_board(rng: random.Random, depth: int, size: int = 3) -> tuple[Board, list[int]]:
    """A board `depth` random legal moves from solved (never undoing the previous move, never solved itself),
    and a solution: the tiles to slide, in order."""
    while True:
        board, moved, previous = solved_board(size), [], None
        for _ in range(depth):
            tile = rng.choice([t for t in movable_tiles(board) if t != previous])
            board, previous = slide(board, tile), tile  # type: ignore[assignment]
            moved.append(tile)
        if board != solved_board(size):
            return board, moved[::-1]  # sliding the same tiles back, last first, solves it


def puzzle_text(board: Board) -> str:
    """The problem statement of a board (the dataset reader's `problem`)."""
    goal = render(solved_board(len(board)))
    return (
        f"Solve this sliding puzzle. Slide tiles until the board reads:\n{goal}\n{board_text(board)}\n"
        "Each turn, slide one tile that is next to the empty square (_) into it: answer with that tile's number "
        "in \\boxed{}, e.g. \\boxed{5}."
    )


def board_text(board: Board) -> str:
    """The board and its legal moves. The moves are listed because a 135M model rarely reads adjacency off
    the grid (SmolLM2 named a movable tile in 12 of 48 first replies without the list): the game is then
    about choosing among 2-4 moves, which is the planning the puzzle is meant to train."""
    return f"Board:\n{render(board)}\nTiles next to the empty square: {', '.join(map(str, movable_tiles(board)))}."


def read_move(text: str) -> int | None:
    """The tile a reply moves: the number in its last `\\boxed{}`; None when there is none."""
    found = _BOXED_NUMBER.findall(text)
    return int(found[-1]) if found else None


@attrs.define(kw_only=True, frozen=True)
class SlidingPuzzleConfig:
    """Options of the `sliding_puzzle` environment."""

    solve_reward: float = doc("reward on the turn that solves the board", default=1.0)
    invalid_move_penalty: float = doc(
        "subtracted on a turn whose move is unreadable or illegal (the board does not change)", default=0.1, validator=v.ge(0.0)
    )


class SlidingPuzzleEnvironment:
    """See the module docstring."""

    summed_metrics = ("moves", "invalid_moves", "solved")
    observation_roles = ("user",)

    def __init__(self, config: SlidingPuzzleConfig | None = None) -> None:
        self.config = config if config is not None else SlidingPuzzleConfig()

    def step(self, conversations: list[list[dict[str, str]]], metadata: list[dict[str, Any]]) -> EnvironmentStep:
        cfg = self.config
        rewards, observations, done, correct, info, components = [], [], [], [], [], []
        invalid_moves = solved_count = 0
        for conversation, meta in zip(conversations, metadata, strict=True):
            board, last_valid = self.replay(conversation, meta)
            solved = board == solved_board(len(board))
            invalid_moves += not last_valid
            solved_count += solved
            reward = (cfg.solve_reward if solved else 0.0) - (0.0 if last_valid else cfg.invalid_move_penalty)
            rewards.append(reward)
            components.append({"solved": cfg.solve_reward if solved else 0.0, "invalid_move": 0.0 if last_valid else -cfg.invalid_move_penalty})
            done.append(solved)
            correct.append(solved)
            info.append({"solved": solved, "board": render(board)})
            observations.append(None if solved else {"role": "user", "content": self.feedback(board, last_valid, conversation)})
        return EnvironmentStep(
            rewards=rewards,
            observations=observations,
            done=done,
            metrics={"moves": float(len(conversations)), "invalid_moves": float(invalid_moves), "solved": float(solved_count)},
            info=info,
            correct=correct,
            reward_components=components,
        )

    def replay(self, conversation: list[dict[str, str]], meta: dict[str, Any]) -> tuple[Board, bool]:
        """The board after every move of the conversation, and whether the last move was legal."""
        board = as_board(meta["board"])
        valid = True
        for reply in episode_replies(conversation, str(meta.get("problem", ""))):
            tile = read_move(reply)
            after = slide(board, tile) if tile is not None else None
            valid = after is not None
            board = after if after is not None else board
        return board, valid

    def feedback(self, board: Board, valid: bool, conversation: list[dict[str, str]]) -> str:
        if valid:
            return f"{board_text(board)}\nYour move?"
        tile = read_move(next((m["content"] for m in reversed(conversation) if m["role"] == "assistant"), ""))
        why = "No move found: answer with a tile number in \\boxed{}." if tile is None else f"Tile {tile} cannot move."
        return f"{why}\n{board_text(board)}\nYour move?"

    def shutdown(self) -> None:
        pass


def episode_replies(conversation: list[dict[str, str]], problem: str) -> list[str]:
    """The assistant messages of the episode: those after the first user message that holds the problem
    (worked examples before it are not moves); without the problem, those after the first user message."""
    start = next((k for k, m in enumerate(conversation) if m.get("role") == "user" and problem and problem.strip() in m["content"]), None)
    if start is None:
        start = next((k for k, m in enumerate(conversation) if m.get("role") == "user"), -1)
    return [str(m["content"]) for m in conversation[start + 1 :] if m.get("role") == "assistant"]


def _blank(board: Board) -> tuple[int, int]:
    return _find(board, 0)


def _find(board: Board, tile: int) -> tuple[int, int]:
    for r, row in enumerate(board):
        if tile in row:
            return r, row.index(tile)
    raise ValueError(f"tile {tile} is not on the board {board}")
