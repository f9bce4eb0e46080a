"""Board configs: one YAML per board, installed with the package so that board names work outside a clone
(``edge.runtime.boards`` reads them from here)."""
