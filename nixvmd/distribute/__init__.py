"""Shards as Nix derivations: what goes into the store, the derivation, its builder, the replay."""
