"""What several test modules share: audio clips written to disk, inputs and hidden states of upstreams, and
commands run as a user runs them. Imported as ``helpers.<module>`` (tests/ is on the path through its conftest)."""
