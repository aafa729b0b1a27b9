"""Past one machine: shards as Nix derivations, realised by Nix on builders."""
