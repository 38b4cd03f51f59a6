"""The queue sources' benchmarks against the sandbox (run by scripts/bench-sources.sh, which
starts the sandbox and builds the release binaries). Every mode runs RUNS times (default 3),
prints each run with the load average, then the median.

    sources.py ENDPOINT TRAILGUARD SQS_DRAIN WORK MODE [ARGS]
      latency [N]            eventbridge_sqs: SentTimestamp of the event in SQS -> key verified
                             Disabled, N failed uses a run (eventbridge_delay_ms = 0)
      lookup [N]             the same through LookupEvents at the default poll (15 s); the clock
                             starts when the failed call returns (the record is visible at once)
      s3 [FILES] [RECORDS]   s3_sqs: org-trail log files already notified into the queue, one
                             replica; records/s from its first receive to the last file read
      eventbridge [N] [RECEIVERS]
                             eventbridge_sqs: N envelopes in the queue, drained by trailguard and
                             by a plain receive/delete loop (examples/sqs_drain.rs) with as many
                             receivers
"""
import atexit, gzip, json, os, random, runpy, socket, statistics, string, subprocess, sys, time, uuid
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3

endpoint, tg_bin, drain_bin, work, mode = sys.argv[1:6]
args = sys.argv[6:]
RUNS = int(os.environ.get("RUNS", "3"))
REGION, ORG = "us-east-1", "o-a1b2c3d4e5"
TAG = uuid.uuid4().hex[:6]  # queue, rule and bucket names unique to this invocation
MATCH_EVERY = int(os.environ.get("MATCH_EVERY", "1000"))  # 1 record in N matches a rule
kw = dict(endpoint_url=endpoint, region_name=REGION, aws_secret_access_key="x")
admin = dict(aws_access_key_id="AKIABENCHADMIN", **kw)
sqs = boto3.client("sqs", **admin)
s3 = boto3.client("s3", **admin)
events = boto3.client("events", **admin)
sns = boto3.client("sns", **admin)
kms = boto3.client("kms", **admin)
app_kms = boto3.client("kms", aws_access_key_id="AKIABENCHAPP", **kw)
topic = sns.create_topic(Name="bench")["TopicArn"]


# How often the throughput modes scrape /metrics: every scrape is parsed here, on the cores
# being measured; 0.1 s is at most 1% of a 10 s run.
THROUGHPUT_POLL = 0.1


def post(path, body):
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST")
    return json.load(urllib.request.urlopen(req))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


class Trailguard:
    """One trailguard process (a replica) with `sources` (TOML) and a fresh state dir."""

    def __init__(self, run, sources):
        self.port = free_port()
        d = os.path.join(work, f"tg-{mode}-{run}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "trailguard.toml")
        with open(conf, "w") as f:
            f.write(f'[aws]\nregions = ["{REGION}"]\n[notify]\nsns_topic_arn = "{topic}"\n'
                    f'aggregation_window = "0s"\n[state]\ndir = "{d}/state"\n'
                    f'[server]\nlisten = "127.0.0.1:{self.port}"\n[log]\nlevel = "warn"\n{sources}')
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION,
                   AWS_ACCESS_KEY_ID="AKIABENCHGUARD", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_EC2_METADATA_DISABLED="true")
        self.log_path = os.path.join(d, "tg.log")
        self.proc = subprocess.Popen([tg_bin, "run", "--config", conf], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "w"))
        atexit.register(self.proc.kill)
        for _ in range(300):
            if self.proc.poll() is not None:
                sys.exit(f"trailguard exited: {open(os.path.join(d, 'tg.log')).read()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz")
                break
            except OSError:
                time.sleep(0.05)

    def metric(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics").read().decode()
        total = 0.0
        for line in body.splitlines():
            if not line.startswith(name) or line[len(name)] not in "{ ":
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def usage(self):
        """(CPU seconds so far, peak resident MiB) of the process."""
        stat = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        hwm = next(int(l.split()[1]) for l in open(f"/proc/{self.proc.pid}/status") if l.startswith("VmHWM"))
        return cpu, hwm / 1024

    def log(self):
        return open(self.log_path).read()[-4000:]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def queue(name):
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = queue_arn(dlq)
    return sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})})["QueueUrl"]


def queue_arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def depth(url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def source(kind, url, receivers=None):
    extra = f"receivers = {receivers}\n" if receivers else ""
    return f'[[sources]]\nkind = "{kind}"\nqueue_url = "{url}"\nregion = "{REGION}"\n{extra}'


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# ---------------------------------------------------------------- records
def records():
    """The fixtures' records (make-corpus.py's base), split into (matching, not matching) by
    `trailguard scan` itself."""
    corpus = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "make-corpus.py"))
    base = corpus["records"]()
    path = os.path.join(work, "base.ndjson")
    with open(path, "w") as f:
        for i in range(len(base)):
            f.write(corpus["tiled"](base, i) + "\n")
    out = subprocess.run([tg_bin, "scan", path], capture_output=True, text=True, check=True).stdout
    hits = {uuid.UUID(json.loads(l)["event_id"]).int - 1 for l in out.splitlines() if l.strip()}
    return [base[i] for i in sorted(hits)], [r for i, r in enumerate(base) if i not in hits]


def stream(n, seed):
    """n records, 1 in MATCH_EVERY matching a rule, each with a fresh eventID, times now."""
    matching, plain = records_cache()
    rng = random.Random(seed)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(n):
        r = dict(rng.choice(matching) if i % MATCH_EVERY == MATCH_EVERY // 2 else rng.choice(plain))
        r["eventID"] = str(uuid.uuid4())
        r["eventTime"] = now
        yield r


_records = None


def records_cache():
    global _records
    if _records is None:
        _records = records()
        print(f"records: {len(_records[0])} matching and {len(_records[1])} other fixture records; "
              f"1 in {MATCH_EVERY} of the generated records matches", flush=True)
    return _records


# ---------------------------------------------------------------- latency
def rescue_latency(n, lookup):
    post("/_sandbox/settings", {"eventbridge_delay_ms": 0})
    rescued = 'trailguard_remediations_total'
    results = []
    for run in range(1, RUNS + 1):
        probe = None
        if lookup:
            tg = Trailguard(run, "")  # no [[sources]]: LookupEvents at the default poll_interval
        else:
            url, probe = queue(f"lat-events-{TAG}-{run}"), queue(f"lat-probe-{TAG}-{run}")
            # One rule for trailguard's queue; a second sends the failed calls to a probe queue
            # as well, whose SentTimestamp says when the event reached SQS.
            for rule, pattern, q in [(f"tg-kms-{TAG}-{run}", {"source": ["aws.kms"]}, url),
                                     (f"probe-{TAG}-{run}", {"source": ["aws.kms"], "detail": {"eventName": ["Encrypt"]}}, probe)]:
                events.put_rule(Name=rule, EventPattern=json.dumps(pattern),
                                State="ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
                events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn(q)}])
            tg = Trailguard(run, source("eventbridge_sqs", url))
        lat, rng = [], random.Random(run)
        for i in range(n):
            arn = kms.create_key()["KeyMetadata"]["Arn"]
            kms.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)
            # Spread the failed calls over the poll cycle (LookupEvents) or at random.
            time.sleep(rng.uniform(0, 15) if lookup else rng.uniform(0, 0.2))
            try:
                app_kms.encrypt(KeyId=arn, Plaintext=b"x")
            except app_kms.exceptions.KMSInvalidStateException:
                pass
            returned = time.time()
            deadline = returned + 60
            while tg.metric(rescued, action="cancel_key_deletion", outcome="applied") < i + 1:
                assert time.time() < deadline, "not rescued in 60 s"
                time.sleep(0.005)
            done = time.time()
            start = returned
            if probe:
                msgs = sqs.receive_message(QueueUrl=probe, WaitTimeSeconds=5, MaxNumberOfMessages=1,
                                           AttributeNames=["SentTimestamp"])["Messages"]
                assert arn in msgs[0]["Body"], "probe out of step"
                sqs.delete_message(QueueUrl=probe, ReceiptHandle=msgs[0]["ReceiptHandle"])
                start = int(msgs[0]["Attributes"]["SentTimestamp"]) / 1000
            lat.append(done - start)
        tg.stop()
        if not lookup:
            for rule in [f"tg-kms-{TAG}-{run}", f"probe-{TAG}-{run}"]:
                events.remove_targets(Rule=rule, Ids=["q"])
                events.delete_rule(Name=rule)
        assert kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "Disabled"
        r = (pct(lat, 0.5), pct(lat, 0.99), max(lat), statistics.mean(lat))
        results.append(r)
        print(f"run {run}: {n} rescues, p50 {r[0]:.3f} s, p99 {r[1]:.3f} s, max {r[2]:.3f} s, "
              f"mean {r[3]:.3f} s ({load()})", flush=True)
    what = "LookupEvents, default poll" if lookup else "eventbridge_sqs, eventbridge_delay_ms=0"
    print(f"{what}: median of {RUNS} runs: p50 {statistics.median(r[0] for r in results):.3f} s, "
          f"p99 {statistics.median(r[1] for r in results):.3f} s")


# ---------------------------------------------------------------- S3
def log_files(n_files, n_records):
    """Org-trail log files: (key, gzip bytes, records), sizes drawn like make-corpus.py's."""
    rng = random.Random(7)
    mean = n_records / n_files
    sizes = [rng.randint(1, max(1, int(2 * mean - 1))) for _ in range(n_files)]
    scale = n_records / sum(sizes)
    sizes = [max(1, int(s * scale)) for s in sizes]
    for k in range(n_records - sum(sizes)):
        sizes[k % n_files] += 1
    while sum(sizes) > n_records:
        sizes[max(range(n_files), key=lambda j: sizes[j])] -= 1
    recs = stream(n_records, 1)
    out = []
    accounts = [f"{100000000000 + 7919 * a:012d}" for a in range(10)]
    for f, size in enumerate(sizes):
        account, region = accounts[f % 10], ["us-east-1", "eu-west-1"][f // 10 % 2]
        body = json.dumps({"Records": [next(recs) for _ in range(size)]}, separators=(",", ":"))
        suffix = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        key = (f"trail/AWSLogs/{ORG}/{account}/CloudTrail/{region}/2026/11/25/"
               f"{account}_CloudTrail_{region}_20261125T{f // 60 % 24:02d}{f % 60:02d}Z_{suffix}.json.gz")
        out.append((key, gzip.compress(body.encode(), compresslevel=6, mtime=0), size))
    return out


def s3_throughput(n_files, n_records):
    files = log_files(n_files, n_records)
    raw = sum(len(gzip.decompress(b)) for _, b, _ in files)
    print(f"{n_files} log files, {n_records} records, {raw / 1e6:.0f} MB "
          f"({sum(len(b) for _, b, _ in files) / 1e6:.0f} MB gzipped)", flush=True)
    results = []
    for run in range(1, RUNS + 1):
        url, bucket = queue(f"trail-files-{TAG}-{run}"), f"org-trail-{TAG}-{run}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn(url), "Events": ["s3:ObjectCreated:*"]}]})
        t = time.time()
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda f: s3.put_object(Bucket=bucket, Key=f[0], Body=f[1]), files))
        while depth(url)[0] < n_files:
            time.sleep(0.2)
        put = time.time() - t
        queued = depth(url)[0]
        tg = Trailguard(run, source("s3_sqs", url))
        name = f"s3:trail-files-{TAG}-{run}"
        t0 = None
        while True:
            now = time.time()
            if t0 is None and tg.metric("trailguard_queue_messages_total", source=name, outcome="received") > 0:
                t0 = now
            if tg.metric("trailguard_queue_log_files_total", source=name) >= n_files:
                read_s = now - t0
                break
            time.sleep(THROUGHPUT_POLL)
        # Every message queued (the files, and the s3:TestEvent moto sends when the notification
        # is set up) deleted.
        while tg.metric("trailguard_queue_messages_total", source=name, outcome="deleted") < queued:
            time.sleep(THROUGHPUT_POLL)
        drained_s = time.time() - t0
        events_read = tg.metric("trailguard_cloudtrail_events_total", region=name)
        failed = tg.metric("trailguard_queue_log_files_total", source=name, outcome="failed")
        cpu, rss = tg.usage()
        counts = {o: tg.metric("trailguard_queue_messages_total", source=name, outcome=o)
                  for o in ("received", "deleted", "skipped", "retried", "dead_lettered")}
        counts["queued before start"] = queued
        counts["depth before stop"] = depth(url)
        tg.stop()
        assert depth(url) == (0, 0), (depth(url), counts, tg.log())
        # A rate counts only if every record was read (duplicates from a redelivery may add).
        assert failed == 0 and events_read >= n_records, (failed, events_read, counts)
        results.append((n_records / read_s, n_records / drained_s))
        print(f"run {run}: files put in {put:.1f} s; trailguard read {events_read:.0f} records of "
              f"{n_files} files in {read_s:.2f} s = {n_records / read_s:,.0f} records/s "
              f"({failed:.0f} files failed); queue drained in {drained_s:.2f} s = "
              f"{n_records / drained_s:,.0f} records/s; trailguard used {cpu:.2f} s of CPU, peak RSS "
              f"{rss:.0f} MiB ({load()})", flush=True)
        for key, _, _ in files:
            s3.delete_object(Bucket=bucket, Key=key)
    print(f"s3_sqs, 1 replica: median of {RUNS} runs: {statistics.median(r[0] for r in results):,.0f} "
          f"records/s read, {statistics.median(r[1] for r in results):,.0f} records/s drained")


# ---------------------------------------------------------------- EventBridge rate
def envelope(r):
    kind = {"AwsServiceEvent": "AWS Service Event via CloudTrail",
            "AwsConsoleSignIn": "AWS Console Sign In via CloudTrail"}.get(r.get("eventType"), "AWS API Call via CloudTrail")
    return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": kind,
                       "source": "aws." + r.get("eventSource", "kms.amazonaws.com").split(".")[0],
                       "account": r.get("recipientAccountId", "123456789012"), "time": r["eventTime"],
                       "region": r.get("awsRegion", REGION), "resources": [], "detail": r})


def fill(url, bodies):
    chunks = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]
    def send(c):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(c)])
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(send, chunks))
    assert depth(url)[0] == len(bodies)


def eventbridge_rate(n, receivers):
    bodies = [envelope(r) for r in stream(n, 2)]
    print(f"{n} EventBridge envelopes, {sum(map(len, bodies)) / n:.0f} bytes on average; "
          f"{receivers} receivers, 10 messages a receive, 20 s long polls", flush=True)
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID="AKIABENCHADMIN",
               AWS_SECRET_ACCESS_KEY="x", AWS_EC2_METADATA_DISABLED="true")
    results = []
    for run in range(1, RUNS + 1):
        url = queue(f"eb-plain-{TAG}-{run}")
        fill(url, bodies)
        out = subprocess.run([drain_bin, url, str(n), str(receivers)], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        plain = float(out[2])
        url = queue(f"eb-tg-{TAG}-{run}")
        fill(url, bodies)
        name = f"eventbridge:eb-tg-{TAG}-{run}"
        tg = Trailguard(run, source("eventbridge_sqs", url, receivers))
        t0 = None
        while True:
            now = time.time()
            if t0 is None and tg.metric("trailguard_queue_messages_total", source=name, outcome="received") > 0:
                t0 = now
            if tg.metric("trailguard_queue_messages_total", source=name, outcome="deleted") >= n:
                secs = now - t0
                break
            time.sleep(THROUGHPUT_POLL)
        read = tg.metric("trailguard_cloudtrail_events_total", region=name)
        cpu, rss = tg.usage()
        tg.stop()
        rate = n / secs
        results.append((plain, rate, rate / plain))
        print(f"run {run}: plain receive/delete {plain:,.0f} messages/s; trailguard {rate:,.0f} "
              f"messages/s ({read:.0f} events read, {secs:.2f} s, {cpu:.2f} s of CPU, peak RSS {rss:.0f} MiB) = "
              f"{rate / plain:.2f} of plain ({load()})",
              flush=True)
    print(f"eventbridge_sqs, 1 replica, {receivers} receivers: median of {RUNS} runs: plain "
          f"{statistics.median(r[0] for r in results):,.0f}/s, trailguard "
          f"{statistics.median(r[1] for r in results):,.0f}/s, ratio {statistics.median(r[2] for r in results):.2f}")


if mode == "latency":
    rescue_latency(int(args[0]) if args else 100, lookup=False)
elif mode == "lookup":
    rescue_latency(int(args[0]) if args else 8, lookup=True)
elif mode == "s3":
    s3_throughput(int(args[0]) if args else 1000, int(args[1]) if len(args) > 1 else 200_000)
elif mode == "eventbridge":
    eventbridge_rate(int(args[0]) if args else 10_000, int(args[1]) if len(args) > 1 else 2)
else:
    sys.exit(__doc__)
