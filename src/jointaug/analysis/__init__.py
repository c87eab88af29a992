"""Analysis tools: pair-difficulty statistics (stats), the paper's figures (plots), pair galleries (pairs)."""
