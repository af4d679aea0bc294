#!/bin/bash
# sample the RSS (MiB) of the e3d process tree every 2 s until it ends: parent, largest child, sum
pid=$1; out=$2
while kill -0 $pid 2>/dev/null; do
  kids=$(pgrep -P $pid | tr '\n' ' ')
  p=$(ps -o rss= -p $pid 2>/dev/null | tr -d ' ')
  c=0; s=${p:-0}
  for k in $kids; do r=$(ps -o rss= -p $k 2>/dev/null | tr -d ' '); r=${r:-0}; s=$((s+r)); [ $r -gt $c ] && c=$r; done
  echo "$(date +%s) ${p:-0} $c $s" >> $out
  sleep 2
done
