#!/bin/bash
# Stop radosgw, osd.0, mon.a started by ceph-up.sh (by recorded PID). Data stays in $D.
D=${D:-${S3DIR:?set S3DIR}/ceph}
for n in rgw osd mon; do
  f="$D/run/$n.daemon.pid"; [ -f "$f" ] || continue
  p=$(cat "$f"); kill "$p" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p"
  rm -f "$f"
done
