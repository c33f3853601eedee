"""The papers' networks, data loading and experiment runners."""
