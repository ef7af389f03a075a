"""Earning rules: a safe expression language (``expr``), rule definitions (``spec``) and
the rule-set engine: the views rules see (``views``), the compiler (``compile``), the
evaluator (``engine``) and what it returns (``awards``).

``expr``, ``spec``, ``views``, ``compile``, ``awards`` and ``engine`` are pure: no
database, no HTTP, no clock (the tables are in ``models``, the database work in
``service``). Rules are compiled once, when a rule set is published, into one Python
function per trigger; evaluating a cart then runs that function instead of interpreting
expressions (see ``docs/rules.md``).
"""
