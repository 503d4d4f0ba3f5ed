# Deltas of every number between two snapshots of counters (objects and arrays alike, nested to
# any depth): d(after; before). Shared by bench/mixed and bench/messages.
#
# Value parameters ($a, $b) on purpose: with filter parameters, the recursive call evaluates the
# caller's `b` again inside the inner with_entries, where `.key` names the inner entry, and nested
# objects come out as totals instead of deltas (bench/lib/delta_selftest.sh).
def d($a; $b):
  if ($a | type) == "object" then
    ($a | with_entries(.value = d(.value; (if ($b | type) == "object" then $b else {} end)[.key])))
  elif ($a | type) == "array" then
    [range(0; $a | length) as $i | d($a[$i]; (if ($b | type) == "array" then $b else [] end)[$i])]
  elif ($a | type) == "number" then $a - (if ($b | type) == "number" then $b else 0 end)
  else $a end;
