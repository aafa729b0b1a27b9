"""Bisect by itself: git bisect driven step by step in nixvmd's own worktree of the kernel tree."""
