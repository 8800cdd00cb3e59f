// Helpers: durations and ratios as the alert texts say them.
{
  // '15m' -> '15 minutes', '1h' -> '1 hour'.
  human(d)::
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local unit = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[d[std.length(d) - 1]];
    '%d %s%s' % [n, unit, if n == 1 then '' else 's'],
  // 0.9 -> '90%'.
  percent(r):: '%d%%' % std.round(r * 100),
  // 0.9 -> '0.9' (std.toString prints 0.90000000000000002).
  num(x):: '%g' % x,
  // The labels of a per-node aggregation, the cluster label first.
  by(c, labels):: std.join(', ', [c.clusterLabel] + labels),
  // '1m' -> '2m': a duration times an integer, in the same unit.
  times(d, k)::
    '%d%s' % [k * std.parseInt(std.substr(d, 0, std.length(d) - 1)), d[std.length(d) - 1]],
}
