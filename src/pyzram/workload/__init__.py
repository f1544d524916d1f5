"""Page sources: live-process snapshots, files, synthetic mixes."""
