"""Past one machine: shards as Nix derivations (what goes into the store, the derivation, its
builder, the replay of its output), realised by Nix on the user's builders."""
