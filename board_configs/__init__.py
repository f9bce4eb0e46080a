"""Board configs: one YAML per board, installed with the package so that board names work outside a clone
(``edge.boards`` reads them from here)."""
