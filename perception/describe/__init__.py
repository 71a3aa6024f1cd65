"""Change mask -> regions -> S2M quadruples (where, what, how, how many), and template captions."""
