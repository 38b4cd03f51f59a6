#!/usr/bin/env python3
"""Renders trailguard's per-feature IAM policies (deploy/iam/trailguard-*.json) for one account.

The files in deploy/iam/ are written for partition `aws`, account 111122223333 and regions
us-east-1, eu-west-1. This fills in yours: the partition (derived from the regions), the
account, the regions trailguard guards (aws:RequestedRegion), the partition's IAM home region
for the IAM and IAM-event statements (Sids ending in "InIamHomeRegion"), and the ARNs of the
topic, the topic's KMS key and the lease table. Files whose ARN was not given are not written.

  deploy/iam/render.py --account 123456789012 --regions us-gov-west-1,us-gov-east-1 \\
      --topic-arn arn:aws-us-gov:sns:us-gov-west-1:123456789012:trailguard-alerts \\
      --lease-table-arn arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/trailguard-lease \\
      --out /tmp/trailguard-policies

Then attach the files for the features the configuration uses (README, "IAM permissions").
Standard library only.
"""

import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE_ACCOUNT = "111122223333"
EXAMPLE_TOPIC = "arn:aws:sns:us-east-1:111122223333:trailguard-alerts"
EXAMPLE_TOPIC_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXAMPLE_TABLE = "arn:aws:dynamodb:us-east-1:111122223333:table/trailguard-lease"
# As trailguard derives them (src/arn.rs): IAM's calls and events live in one region.
IAM_HOME = {
    "aws": "us-east-1",
    "aws-us-gov": "us-gov-west-1",
    "aws-cn": "cn-north-1",
    "aws-iso": "us-iso-east-1",
    "aws-iso-b": "us-isob-east-1",
}


def partition_of(region: str) -> str:
    for prefix, partition in (
        ("us-gov-", "aws-us-gov"),
        ("cn-", "aws-cn"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
    ):
        if region.startswith(prefix):
            return partition
    return "aws"


def render(doc, *, partition, account, regions, arns):
    home = IAM_HOME[partition]
    for st in doc["Statement"]:
        cond = st.get("Condition", {}).get("StringEquals", {})
        if "aws:RequestedRegion" in cond:
            cond["aws:RequestedRegion"] = home if st["Sid"].endswith("InIamHomeRegion") else regions
        lead = st.get("Condition", {}).get("ForAllValues:StringEquals", {})
        if "dynamodb:LeadingKeys" in lead:
            lead["dynamodb:LeadingKeys"] = [account]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out = []
        for r in resources:
            r = arns.get(r, r)
            if r.startswith("arn:aws:"):
                r = f"arn:{partition}:" + r[len("arn:aws:"):]
            out.append(r.replace(EXAMPLE_ACCOUNT, account))
        st["Resource"] = out if isinstance(st["Resource"], list) else out[0]
        like = st.get("Condition", {}).get("StringLike", {})
        if "kms:ViaService" in like and partition == "aws-cn":
            like["kms:ViaService"] = "sns.*.amazonaws.com.cn"
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--account", required=True)
    ap.add_argument("--regions", required=True, help="comma-separated, as aws.regions")
    ap.add_argument("--partition", help="default: from the regions")
    ap.add_argument("--topic-arn")
    ap.add_argument("--topic-key-arn")
    ap.add_argument("--lease-table-arn")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    regions = [r.strip() for r in a.regions.split(",") if r.strip()]
    partition = a.partition or partition_of(regions[0])
    if partition not in IAM_HOME or any(partition_of(r) != partition for r in regions):
        print(f"render: regions {regions} are not all in partition {partition}", file=sys.stderr)
        return 2
    if not (a.account.isdigit() and len(a.account) == 12):
        print(f"render: {a.account!r} is not a 12-digit account id", file=sys.stderr)
        return 2
    arns = {EXAMPLE_TOPIC: a.topic_arn, EXAMPLE_TOPIC_KEY: a.topic_key_arn, EXAMPLE_TABLE: a.lease_table_arn}
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(HERE.glob("trailguard-*.json")):
        doc = json.loads(path.read_text())
        text = path.read_text()
        missing = [example for example, given in arns.items() if example in text and not given]
        if missing:
            print(f"render: skipped {path.name} (give the ARN for {missing[0]})")
            continue
        doc = render(doc, partition=partition, account=a.account, regions=regions, arns=arns)
        (out / path.name).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"render: {out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
