//! The organization templates (`deploy/cloudformation/org-*.yaml`) do what ORGANIZATION.md
//! says: the bus admits only the organization, the rules see the read-only failures trailguard
//! rescues keys on (their patterns evaluated here against real-shaped events), every queue has a
//! dead-letter queue, only the intended rules and bucket can send, the member role demands the
//! external id, no partition or region is hard-coded, and the service runs as ECS requires.
//! cfn-lint and checkov (tests/validate-deploy.sh) check the rest of CloudFormation's rules.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use yaml_rust2::parser::{Event, EventReceiver, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const CENTRAL: &str = "deploy/cloudformation/org-central.yaml";
const MEMBER: &str = "deploy/cloudformation/org-member.yaml";
const SERVICE: &str = "deploy/cloudformation/org-service.yaml";
const TEMPLATES: [&str; 3] = [CENTRAL, MEMBER, SERVICE];
const ALL_MANAGEMENT_EVENTS: &str = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS";

// --- YAML with CloudFormation's short-form tags, read into the JSON form CloudFormation uses ---

/// Builds JSON from parser events; `!Ref x` becomes `{"Ref": "x"}`, `!GetAtt A.B`
/// `{"Fn::GetAtt": ["A", "B"]}`, `!Condition c` `{"Condition": "c"}`, any other `!Name v`
/// `{"Fn::Name": v}`: the long forms of CloudFormation's template reference.
#[derive(Default)]
struct Loader {
    stack: Vec<(Option<Tag>, Frame)>,
    root: Option<Value>,
}

enum Frame {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

fn long_form(tag: Option<Tag>, v: Value) -> Value {
    let Some(tag) = tag.filter(|t| t.handle == "!") else {
        return v;
    };
    match (tag.suffix.as_str(), v) {
        ("Ref", v) => json!({ "Ref": v }),
        ("Condition", v) => json!({ "Condition": v }),
        ("GetAtt", Value::String(s)) => {
            let (resource, attribute) = s.split_once('.').expect("!GetAtt Resource.Attribute");
            json!({ "Fn::GetAtt": [resource, attribute] })
        }
        (name, v) => json!({ format!("Fn::{name}"): v }),
    }
}

fn scalar(text: String, style: TScalarStyle, tagged: bool) -> Value {
    if style != TScalarStyle::Plain || tagged {
        return Value::String(text);
    }
    match text.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" | "" => Value::Null,
        t => t
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| t.parse::<f64>().map(Value::from))
            .unwrap_or(Value::String(text)),
    }
}

impl Loader {
    fn add(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some((_, Frame::Seq(items))) => items.push(v),
            Some((_, Frame::Map(map, key))) => match key.take() {
                None => {
                    *key = Some(match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                }
                Some(k) => {
                    assert!(!map.contains_key(&k), "duplicate key {k}");
                    map.insert(k, v);
                }
            },
        }
    }
}

impl EventReceiver for Loader {
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Scalar(text, style, _, tag) => {
                let tagged = tag.as_ref().is_some_and(|t| t.handle == "!");
                let v = long_form(tag, scalar(text, style, tagged));
                self.add(v);
            }
            Event::SequenceStart(_, tag) => self.stack.push((tag, Frame::Seq(Vec::new()))),
            Event::MappingStart(_, tag) => self.stack.push((tag, Frame::Map(Map::new(), None))),
            Event::SequenceEnd | Event::MappingEnd => {
                let (tag, frame) = self.stack.pop().expect("balanced");
                let v = match frame {
                    Frame::Seq(items) => Value::Array(items),
                    Frame::Map(map, None) => Value::Object(map),
                    Frame::Map(_, Some(k)) => panic!("key {k} without a value"),
                };
                self.add(long_form(tag, v));
            }
            Event::Alias(_) => panic!("CloudFormation templates have no YAML aliases"),
            _ => {}
        }
    }
}

fn template(path: &str) -> Value {
    let text = read(path);
    let mut loader = Loader::default();
    Parser::new_from_str(&text)
        .load(&mut loader, false)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    loader.root.unwrap_or_else(|| panic!("{path} is empty"))
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("no resource {name}"))
}

fn props<'a>(t: &'a Value, name: &str) -> &'a Value {
    &resource(t, name)["Properties"]
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

fn default_of<'a>(t: &'a Value, parameter: &str) -> &'a Value {
    &t["Parameters"][parameter]["Default"]
}

fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// A policy value that may be one item or a list, as a list.
fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn statement<'a>(doc: &'a Value, sid: &str) -> &'a Value {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {doc}"))
}

/// Every string in the template, with the key it is under (Descriptions left out: prose).
fn strings<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if key != "Description" => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, key, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(v, k, out)),
        _ => {}
    }
}

#[test]
fn the_loader_reads_short_forms_as_long_forms() {
    let mut loader = Loader::default();
    let text = "a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub \"x${Y}\"\nd: !If [C, 1, !Ref AWS::NoValue]\n\
                e: {f: !Select [4, !Split [\":\", !Ref R]]}\ng: \"5\"\nh: 5\ni: true\nj: >-\n  k\n  l\n";
    Parser::new_from_str(text).load(&mut loader, false).unwrap();
    assert_eq!(
        loader.root.unwrap(),
        json!({
            "a": {"Ref": "X"}, "b": {"Fn::GetAtt": ["Q", "Arn"]}, "c": {"Fn::Sub": "x${Y}"},
            "d": {"Fn::If": ["C", 1, {"Ref": "AWS::NoValue"}]},
            "e": {"f": {"Fn::Select": [4, {"Fn::Split": [":", {"Ref": "R"}]}]}},
            "g": "5", "h": 5, "i": true, "j": "k l"
        })
    );
}

// --- EventBridge patterns: the operators these templates use ---------------------------------

/// Whether `event` matches the EventBridge `pattern`, with the operators the templates use:
/// exact values, `prefix`, `suffix`, `exists`, nested objects, `$or`. Any other operator
/// panics, so a template that starts using one must teach this function first.
fn matches(pattern: &Value, event: &Value) -> bool {
    let pattern = pattern.as_object().expect("a pattern is an object");
    pattern.iter().all(|(key, sub)| {
        if key == "$or" {
            return sub
                .as_array()
                .expect("$or takes a list")
                .iter()
                .any(|alternative| matches(alternative, event));
        }
        let field = event.get(key);
        match sub {
            Value::Object(_) => field.is_some_and(|f| f.is_object() && matches(sub, f)),
            Value::Array(matchers) => matchers.iter().any(|m| leaf(m, field)),
            other => panic!("a pattern's leaves are lists, not {other}"),
        }
    })
}

fn leaf(matcher: &Value, field: Option<&Value>) -> bool {
    let values = match field {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    let Some(op) = matcher.as_object() else {
        return values.contains(&matcher);
    };
    let (name, arg) = op.iter().next().expect("an operator");
    let text = |f: fn(&str, &str) -> bool| {
        let arg = arg.as_str().expect("a string operand");
        values.iter().any(|v| v.as_str().is_some_and(|s| f(s, arg)))
    };
    match name.as_str() {
        "prefix" => text(|s, a| s.starts_with(a)),
        "suffix" => text(|s, a| s.ends_with(a)),
        "exists" => arg.as_bool().expect("exists: bool") == field.is_some(),
        other => panic!("operator {other} is not implemented in this test"),
    }
}

/// The rule's pattern, checked by this test's matcher and by the sandbox's (which implements
/// every operator the EventBridge guide lists): both must agree.
fn rule_matches(rule: &Value, event: &Value) -> bool {
    let pattern = &rule["EventPattern"];
    let ours = matches(pattern, event);
    assert_eq!(
        ours,
        trailguard_sandbox::pattern::matches(pattern, event),
        "this test's matcher and the sandbox's disagree on {event}"
    );
    ours
}

/// Whether a rule (state and pattern) receives `event` at all.
fn rule_receives(rule: &Value, event: &Value) -> bool {
    let state = rule["State"].as_str().expect("a literal State");
    trailguard_sandbox::eventbridge::state_admits(state, event) && rule_matches(rule, event)
}

/// The documented and constructed CloudTrail records of tests/fixtures (see its README), and a
/// few variants: each with the account and region EventBridge would put in the envelope.
fn sample_records() -> Vec<(String, Value)> {
    let samples: Vec<Value> = serde_json::from_str(&read("tests/fixtures/aws-sample-events.json")).unwrap();
    let mut out: Vec<(String, Value)> = samples
        .iter()
        .map(|s| (s["description"].as_str().unwrap().to_owned(), s["record"].clone()))
        .collect();
    let find = |name: &str, pending: bool| {
        out.iter()
            .find(|(_, r)| {
                r["eventName"] == name
                    && r["errorMessage"]
                        .as_str()
                        .is_some_and(|m| m.ends_with(" is pending deletion."))
                        == pending
            })
            .unwrap_or_else(|| panic!("no {name} (pending deletion: {pending}) in the fixtures"))
            .1
            .clone()
    };
    let mut replica = find("Decrypt", true);
    let message = replica["errorMessage"]
        .as_str()
        .unwrap()
        .replace(" is pending deletion.", " is pending replica deletion.");
    replica["errorMessage"] = json!(message);
    let mut create_key = find("UpdateAccessKey", false);
    create_key["eventName"] = json!("CreateAccessKey");
    let mut describe = find("Decrypt", false);
    describe["eventName"] = json!("DescribeKey");
    let mut put_key_policy = find("DisableKey", false);
    put_key_policy["eventName"] = json!("PutKeyPolicy");
    out.extend([
        (
            "failed Decrypt on a replica key pending deletion".to_owned(),
            replica,
        ),
        ("CreateAccessKey".to_owned(), create_key),
        ("DescribeKey".to_owned(), describe),
        ("PutKeyPolicy".to_owned(), put_key_policy),
    ]);
    out
}

fn envelope(record: &Value) -> Value {
    let account = record["recipientAccountId"].as_str().unwrap_or("111122223333");
    let region = record["awsRegion"].as_str().unwrap_or("us-east-1");
    trailguard_sandbox::eventbridge::envelope(record, account, region)
}

/// What the brief asks the KMS rule to forward, stated independently of the template.
fn kms_wanted(record: &Value) -> bool {
    const NAMES: [&str; 9] = [
        "DisableKey",
        "ScheduleKeyDeletion",
        "DeleteAlias",
        "UpdateAlias",
        "UntagResource",
        "CreateAlias",
        "TagResource",
        "EnableKey",
        "CancelKeyDeletion",
    ];
    let message = record["errorMessage"].as_str().unwrap_or_default();
    record["eventSource"] == "kms.amazonaws.com"
        && (message.ends_with(" is pending deletion.")
            || message.ends_with(" is pending replica deletion.")
            || NAMES.iter().any(|n| record["eventName"] == *n))
}

fn iam_wanted(record: &Value) -> bool {
    record["eventSource"] == "iam.amazonaws.com"
        && (record["eventName"] == "UpdateAccessKey" || record["eventName"] == "CreateAccessKey")
}

fn find_record(records: &[(String, Value)], f: impl Fn(&Value) -> bool) -> Value {
    records
        .iter()
        .find(|(_, r)| f(r))
        .map(|(_, r)| r.clone())
        .expect("a sample record")
}

#[test]
fn the_member_kms_rule_sees_failed_uses_of_keys_pending_deletion_and_the_key_changes() {
    let member = template(MEMBER);
    let rule = props(&member, "KmsForwardRule");
    assert_eq!(rule["State"], ALL_MANAGEMENT_EVENTS);
    assert!(
        rule.get("EventBusName").is_none() || rule["EventBusName"] == "default",
        "the member rule is on the default bus, where CloudTrail's events arrive"
    );
    assert!(
        resource(&member, "KmsForwardRule").get("Condition").is_none(),
        "the KMS rule exists in every region"
    );
    let records = sample_records();
    for (what, record) in &records {
        let event = envelope(record);
        assert_eq!(
            rule_receives(rule, &event),
            kms_wanted(record),
            "member KMS rule on: {what}"
        );
    }
    // The cases the issue names, by name, so that the table above cannot pass vacuously.
    let failed_decrypt = envelope(&find_record(&records, |r| {
        r["eventName"] == "Decrypt"
            && r["readOnly"] == true
            && r["errorMessage"]
                .as_str()
                .is_some_and(|m| m.ends_with(" is pending deletion."))
    }));
    let schedule = envelope(&find_record(&records, |r| {
        r["eventName"] == "ScheduleKeyDeletion" && r.get("errorCode").is_none()
    }));
    let ok_decrypt = envelope(&find_record(&records, |r| {
        r["eventName"] == "Decrypt" && r.get("errorCode").is_none()
    }));
    let other_failure = envelope(&find_record(&records, |r| {
        r["eventName"] == "Decrypt" && r["errorCode"] == "IncorrectKeyException"
    }));
    assert!(rule_receives(rule, &failed_decrypt));
    assert!(rule_receives(rule, &schedule));
    assert!(
        !rule_receives(rule, &ok_decrypt),
        "a successful Decrypt must stay home"
    );
    assert!(!rule_receives(rule, &other_failure));
    // Why the state matters: with plain ENABLED the failed Decrypt (readOnly) never arrives,
    // though the pattern matches it; the ScheduleKeyDeletion (a write) would.
    let mut plain = rule.clone();
    plain["State"] = json!("ENABLED");
    assert!(rule_matches(&plain, &failed_decrypt));
    assert!(!rule_receives(&plain, &failed_decrypt));
    assert!(rule_receives(&plain, &schedule));
}

#[test]
fn the_member_iam_rule_lives_in_the_iam_home_region_and_sees_access_key_changes() {
    let member = template(MEMBER);
    assert_eq!(
        resource(&member, "IamForwardRule")["Condition"],
        "InIamHomeRegion"
    );
    assert_eq!(
        member["Conditions"]["InIamHomeRegion"],
        json!({"Fn::Equals": [reference("AWS::Region"), reference("IamHomeRegion")]})
    );
    let rule = props(&member, "IamForwardRule");
    for (what, record) in sample_records() {
        assert_eq!(
            rule_receives(rule, &envelope(&record)),
            iam_wanted(&record),
            "member IAM rule on: {what}"
        );
    }
}

#[test]
fn member_rules_forward_to_the_central_bus_through_a_role_allowed_to_put_events_there() {
    let member = template(MEMBER);
    for name in ["KmsForwardRule", "IamForwardRule"] {
        let targets = props(&member, name)["Targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{name}");
        assert_eq!(targets[0]["Arn"], reference("CentralEventBusArn"), "{name}");
        assert_eq!(targets[0]["RoleArn"], get_att("ForwardRole", "Arn"), "{name}");
        assert!(
            targets[0].get("Input").is_none()
                && targets[0].get("InputPath").is_none()
                && targets[0].get("InputTransformer").is_none(),
            "{name}: the whole envelope must travel (account and region come from it)"
        );
    }
    let role = props(&member, "ForwardRole");
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"], json!({"Service": "events.amazonaws.com"}));
    assert_eq!(
        trust["Condition"]["StringEquals"]["aws:SourceAccount"],
        reference("AWS::AccountId")
    );
    let put = statement(&role["Policies"][0]["PolicyDocument"], "PutEventsOnCentralBus");
    assert_eq!(put["Action"], "events:PutEvents");
    assert_eq!(put["Resource"], reference("CentralEventBusArn"));
}

#[test]
fn the_central_rules_repeat_the_member_patterns_and_target_the_events_queue() {
    let central = template(CENTRAL);
    let member = template(MEMBER);
    for (central_rule, member_rule) in [
        ("KmsEventsRule", "KmsForwardRule"),
        ("IamEventsRule", "IamForwardRule"),
    ] {
        let c = props(&central, central_rule);
        let m = props(&member, member_rule);
        assert_eq!(c["EventPattern"], m["EventPattern"], "{central_rule}");
        assert_eq!(c["State"], m["State"], "{central_rule}");
        assert_eq!(c["EventBusName"], reference("EventBus"), "{central_rule}");
        let target = &c["Targets"][0];
        assert_eq!(target["Arn"], get_att("EventsQueue", "Arn"), "{central_rule}");
        assert_eq!(
            target["DeadLetterConfig"]["Arn"],
            get_att("EventsDeadLetterQueue", "Arn"),
            "{central_rule}: events EventBridge cannot deliver must not be dropped"
        );
    }
    assert_eq!(props(&central, "KmsEventsRule")["State"], ALL_MANAGEMENT_EVENTS);
}

#[test]
fn the_bus_admits_put_events_only_from_the_organization() {
    let central = template(CENTRAL);
    let policy = &props(&central, "EventBus")["Policy"];
    let statements = policy["Statement"].as_array().unwrap();
    assert!(!statements.is_empty());
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(list(&s["Action"]), vec![json!("events:PutEvents")], "{s}");
        if s["Principal"] == "*" || s["Principal"]["AWS"] == "*" {
            assert_eq!(
                s["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
                reference("OrganizationId"),
                "an open principal needs the organization condition: {s}"
            );
        }
    }
    let org = statement(policy, "OrganizationForwardsCloudTrailEvents");
    let sources: BTreeSet<String> = list(&org["Condition"]["StringEquals"]["events:source"])
        .into_iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sources,
        BTreeSet::from(["aws.iam".to_owned(), "aws.kms".to_owned()])
    );
    assert_eq!(
        central["Parameters"]["OrganizationId"]["AllowedPattern"],
        "^o-[a-z0-9]{10,32}$"
    );
}

#[test]
fn every_queue_has_a_dead_letter_queue_and_a_redrive_policy() {
    let central = template(CENTRAL);
    let queues = of_type(&central, "AWS::SQS::Queue");
    let dead_letter: BTreeSet<&str> = queues
        .iter()
        .filter(|(n, _)| n.ends_with("DeadLetterQueue"))
        .map(|(n, _)| n.as_str())
        .collect();
    let sources: Vec<_> = queues
        .iter()
        .filter(|(n, _)| !dead_letter.contains(n.as_str()))
        .collect();
    assert_eq!(sources.len(), 2, "the events and trail-files queues");
    assert_eq!(dead_letter.len(), 2);
    let seconds = |v: &Value| v.as_i64().expect("a literal number of seconds");
    for (name, q) in sources {
        let p = &q["Properties"];
        let redrive = &p["RedrivePolicy"];
        let dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no dead-letter queue"));
        assert!(dead_letter.contains(dlq), "{name} -> {dlq}");
        assert_eq!(redrive["deadLetterTargetArn"]["Fn::GetAtt"][1], "Arn");
        assert_eq!(redrive["maxReceiveCount"], reference("MaxReceiveCount"), "{name}");
        assert_eq!(p["VisibilityTimeout"], reference("VisibilityTimeout"), "{name}");
        assert_eq!(p["SqsManagedSseEnabled"], true, "{name}");
        assert_eq!(p["ReceiveMessageWaitTimeSeconds"], 20, "{name}: long polling");
        assert!(
            p.get("FifoQueue").is_none(),
            "{name}: S3 cannot notify FIFO queues"
        );
        let d = props(&central, dlq);
        assert_eq!(d["SqsManagedSseEnabled"], true, "{dlq}");
        assert!(
            seconds(&d["MessageRetentionPeriod"]) > seconds(&p["MessageRetentionPeriod"]),
            "{dlq} must keep a message longer than {name} (it keeps its first enqueue time)"
        );
        // The dead-letter queue is named after its queue with "-dlq": the service's task role
        // relies on it, and the DLQ admits redrive from that queue only.
        let queue_name = p["QueueName"]["Fn::Sub"].as_str().unwrap();
        assert_eq!(d["QueueName"]["Fn::Sub"], format!("{queue_name}-dlq"));
        assert_eq!(d["RedriveAllowPolicy"]["redrivePermission"], "byQueue");
        let allowed = d["RedriveAllowPolicy"]["sourceQueueArnList"][0]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(allowed.ends_with(&format!(":{queue_name}")), "{allowed}");
        assert_eq!(
            resource(&central, name).get("Condition"),
            resource(&central, dlq).get("Condition"),
            "{name} and {dlq} exist together"
        );
    }
    assert_eq!(*default_of(&central, "MaxReceiveCount"), json!(5));
    assert!(default_of(&central, "VisibilityTimeout").as_i64().unwrap() >= 120);
}

/// The queue policy's statement allowing `service` to send, and the policy's queues.
fn send_statement<'a>(t: &'a Value, policy: &str, service: &str) -> (&'a Value, &'a Value) {
    let p = props(t, policy);
    let allow: Vec<_> = p["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .collect();
    assert_eq!(allow.len(), 1, "{policy}: one Allow");
    assert_eq!(allow[0]["Principal"], json!({ "Service": service }), "{policy}");
    assert_eq!(allow[0]["Action"], "sqs:SendMessage", "{policy}");
    (allow[0], &p["Queues"])
}

#[test]
fn only_the_central_rules_and_the_trail_bucket_can_send_to_the_queues() {
    let central = template(CENTRAL);
    let rules = json!([get_att("KmsEventsRule", "Arn"), get_att("IamEventsRule", "Arn")]);
    for (policy, queue) in [
        ("EventsQueuePolicy", "EventsQueue"),
        ("EventsDeadLetterQueuePolicy", "EventsDeadLetterQueue"),
    ] {
        let (s, queues) = send_statement(&central, policy, "events.amazonaws.com");
        assert_eq!(*queues, json!([reference(queue)]));
        assert_eq!(s["Resource"], get_att(queue, "Arn"));
        assert_eq!(s["Condition"]["ArnEquals"]["aws:SourceArn"], rules, "{policy}");
    }
    let (s, queues) = send_statement(&central, "TrailFilesQueuePolicy", "s3.amazonaws.com");
    assert_eq!(*queues, json!([reference("TrailFilesQueue")]));
    assert_eq!(
        s["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${OrgTrailBucketName}"})
    );
    assert_eq!(
        s["Condition"]["StringEquals"]["aws:SourceAccount"],
        json!({"Fn::If": ["BucketHere", reference("AWS::AccountId"), reference("OrgTrailBucketAccountId")]})
    );
    // Every queue has a policy, and every policy refuses plain HTTP.
    for (name, _) in of_type(&central, "AWS::SQS::Queue") {
        let policies: Vec<_> = of_type(&central, "AWS::SQS::QueuePolicy")
            .into_iter()
            .filter(|(_, p)| p["Properties"]["Queues"] == json!([reference(name)]))
            .collect();
        assert_eq!(policies.len(), 1, "{name}");
        let tls = statement(&policies[0].1["Properties"]["PolicyDocument"], "TlsOnly");
        assert_eq!(tls["Effect"], "Deny");
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    }
}

#[test]
fn the_member_role_trusts_only_the_central_task_role_with_the_external_id() {
    let member = template(MEMBER);
    let r = resource(&member, "TrailguardRole");
    assert_eq!(
        r["Condition"], "InIamHomeRegion",
        "IAM is global: one region creates the role"
    );
    let p = &r["Properties"];
    assert_eq!(p["RoleName"], reference("RoleName"));
    assert_eq!(*default_of(&member, "RoleName"), json!("trailguard"));
    let trust = p["AssumeRolePolicyDocument"]["Statement"].as_array().unwrap();
    assert_eq!(trust.len(), 1);
    let t = &trust[0];
    assert_eq!(t["Effect"], "Allow");
    assert_eq!(t["Action"], "sts:AssumeRole");
    assert_eq!(
        t["Condition"]["StringEquals"]["sts:ExternalId"],
        reference("ExternalId")
    );
    assert_eq!(
        t["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        reference("TrailguardTaskRoleArn")
    );
    let root = t["Principal"]["AWS"]["Fn::Sub"][0].as_str().unwrap();
    assert_eq!(root, "arn:${AWS::Partition}:iam::${CentralAccount}:root");
    assert_eq!(member["Parameters"]["ExternalId"]["NoEcho"], true);
    assert_eq!(member["Parameters"]["ExternalId"]["MinLength"], 2);
}

#[test]
fn the_member_role_may_change_only_what_the_configuration_uses_and_never_exempt_users() {
    let member = template(MEMBER);
    let doc = &props(&member, "TrailguardRole")["Policies"][0]["PolicyDocument"];
    let allowed: BTreeSet<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| list(&s["Action"]))
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "kms:DescribeKey",
        "kms:CancelKeyDeletion",
        "kms:ListResourceTags",
        "kms:ListAliases",
        "kms:ListKeys",
        "cloudtrail:LookupEvents",
        "iam:ListUsers",
        "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed",
        "iam:ListUserTags",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(allowed, expected, "always granted");
    let deny = statement(doc, "ExemptUsersKeepTheirKeys");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        list(&deny["Action"]),
        vec![json!("iam:UpdateAccessKey"), json!("iam:DeleteAccessKey")]
    );
    assert_eq!(
        deny["Condition"]["StringEqualsIgnoreCase"]["aws:ResourceTag/trailguard:exempt"],
        "true"
    );
    // The changing actions, each in a policy that exists only when configured.
    for (policy, condition, action, parameter, values) in [
        (
            "EnableKeyPolicy",
            "RoleWithEnableKey",
            "kms:EnableKey",
            "EnableAfterCancel",
            vec!["true"],
        ),
        (
            "DeactivateKeysPolicy",
            "RoleWithKeyDeactivation",
            "iam:UpdateAccessKey",
            "IamAction",
            vec!["deactivate", "delete"],
        ),
        (
            "DeleteKeysPolicy",
            "RoleWithKeyDeletion",
            "iam:DeleteAccessKey",
            "IamAction",
            vec!["delete"],
        ),
    ] {
        let r = resource(&member, policy);
        assert_eq!(r["Condition"], condition);
        assert_eq!(r["Properties"]["RoleName"], reference("TrailguardRole"));
        let s = &r["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(s.as_array().unwrap().len(), 1);
        assert_eq!(s[0]["Action"], action);
        let c = member["Conditions"][condition].to_string();
        assert!(c.contains("InIamHomeRegion"), "{condition}: {c}");
        let all = member["Conditions"].to_string();
        assert!(
            all.contains(&format!("{{\"Ref\":\"{parameter}\"}}")),
            "{parameter}"
        );
        for v in values {
            assert!(all.contains(&format!("\"{v}\"")), "{condition} on {v}");
        }
    }
    assert_eq!(*default_of(&member, "IamAction"), json!("notify"));
    assert_eq!(*default_of(&member, "EnableAfterCancel"), json!("false"));
}

#[test]
fn the_task_role_consumes_the_queues_reads_the_trail_and_assumes_the_member_roles() {
    let service = template(SERVICE);
    let doc = &props(&service, "TaskRole")["Policies"][0]["PolicyDocument"];
    let consume = statement(doc, "ConsumeEventsQueue");
    let queue_actions = json!([
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes"
    ]);
    assert_eq!(consume["Action"], queue_actions);
    assert_eq!(consume["Resource"], reference("EventsQueueArn"));
    let assume = statement(doc, "AssumeMemberRoles");
    assert_eq!(assume["Action"], "sts:AssumeRole");
    assert_eq!(
        assume["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"})
    );
    assert_eq!(
        assume["Condition"]["StringEquals"]["aws:ResourceOrgID"],
        reference("OrganizationId")
    );
    assert_eq!(
        statement(doc, "PublishNotifications")["Resource"],
        reference("AlertTopicArn")
    );

    let extra = |name: &str, condition: &str| {
        let r = resource(&service, name);
        assert_eq!(r["Condition"], condition, "{name}");
        assert_eq!(r["Properties"]["RoleName"], reference("TaskRole"), "{name}");
        r["Properties"]["PolicyDocument"].clone()
    };
    let trail_queue = extra("TrailFilesQueuePolicy", "WithTrailFiles");
    let consume = statement(&trail_queue, "ConsumeTrailFilesQueue");
    assert_eq!(consume["Action"], queue_actions);
    assert_eq!(consume["Resource"], reference("TrailFilesQueueArn"));
    let bucket = extra("TrailBucketPolicy", "WithTrailBucket");
    let read = statement(&bucket, "ReadOrganizationTrailFiles");
    assert_eq!(read["Action"], "s3:GetObject");
    assert_eq!(
        read["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${OrgTrailBucketName}/${OrgTrailPrefix}AWSLogs/${OrganizationId}/*"})
    );
    let key = extra("TrailKeyPolicy", "WithTrailKey");
    assert_eq!(
        statement(&key, "DecryptOrganizationTrailFiles")["Action"],
        "kms:Decrypt"
    );
    let discovery = extra("DiscoveryPolicy", "WithDiscovery");
    assert_eq!(
        statement(&discovery, "DiscoverAccounts")["Action"],
        "organizations:ListAccounts"
    );

    // The central stack names each dead-letter queue after its queue, "-dlq": what the task
    // role's GetQueueAttributes on "${...QueueArn}-dlq" relies on (checked on the central side in
    // every_queue_has_a_dead_letter_queue_and_a_redrive_policy).
    assert_eq!(
        statement(doc, "WatchEventsDeadLetterQueue")["Resource"],
        json!({"Fn::Sub": "${EventsQueueArn}-dlq"})
    );
    // The member role's default name is the one the service may assume and the config names.
    let member = template(MEMBER);
    assert_eq!(
        default_of(&service, "MemberRoleName"),
        default_of(&member, "RoleName")
    );
}

#[test]
fn the_service_runs_replicas_with_the_config_from_ssm_and_an_ecs_health_check() {
    let service = template(SERVICE);
    assert_eq!(
        props(&service, "Service")["DesiredCount"],
        reference("DesiredCount")
    );
    assert_eq!(*default_of(&service, "DesiredCount"), json!(2));
    let td = props(&service, "TaskDefinition");
    let container = &td["ContainerDefinitions"][0];
    assert_eq!(
        container["HealthCheck"]["Command"],
        json!(["CMD", "/trailguard", "health", "--live"]),
        "ECS needs the CMD form (the image has no shell)"
    );
    assert_eq!(container["ReadonlyRootFilesystem"], true);
    let secrets = container["Secrets"].as_array().unwrap();
    let config = secrets
        .iter()
        .find(|s| s["Name"] == "TRAILGUARD_CONFIG_TOML")
        .expect("the document comes as TRAILGUARD_CONFIG_TOML");
    let from = config["ValueFrom"]["Fn::Sub"].as_str().unwrap();
    assert!(
        from.starts_with("arn:${AWS::Partition}:ssm:") && from.ends_with(":parameter${ConfigParameterName}")
    );
    let read = statement(
        &props(&service, "ExecutionRole")["Policies"][0]["PolicyDocument"],
        "ReadConfigParameter",
    );
    assert_eq!(read["Action"], "ssm:GetParameters");
    assert_eq!(
        read["Resource"]["Fn::Sub"], from,
        "the execution role reads that parameter"
    );
    // No durable state: only task storage (no host, EFS or Docker volume).
    for v in td["Volumes"].as_array().unwrap() {
        let keys: Vec<_> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Name"], "a task-storage volume only: {v}");
    }
    // Competing consumers may overlap during a deployment.
    let deployment = &props(&service, "Service")["DeploymentConfiguration"];
    assert!(deployment["MaximumPercent"].as_i64().unwrap() > 100);
    // Every TRAILGUARD__SECTION__KEY is a key trailguard knows (or the container would exit 64).
    let known = trailguard::config::known_keys();
    for e in container["Environment"].as_array().unwrap() {
        let name = e["Name"].as_str().unwrap();
        let key = name
            .strip_prefix("TRAILGUARD__")
            .unwrap_or_else(|| panic!("{name}"))
            .to_lowercase()
            .replacen("__", ".", 1);
        assert!(known.contains(&key), "{name} is not a config key ({key})");
    }
}

#[test]
fn no_template_hard_codes_a_partition_or_a_region() {
    let region =
        regex::Regex::new(r"\b(us|eu|ap|sa|ca|me|af|il|mx|cn)(-gov|-iso[a-z]?)?-[a-z]+-\d+\b").unwrap();
    let arn = regex::Regex::new(r"arn:([^$\[]|$)").unwrap();
    for path in TEMPLATES {
        let t = template(path);
        let mut all = Vec::new();
        strings(&t, "", &mut all);
        assert!(all.len() > 50, "{path}: read too little");
        for s in all {
            assert!(!s.contains("arn:aws"), "{path}: hard-coded partition in {s:?}");
            assert!(
                !arn.is_match(s),
                "{path}: an ARN not starting arn:${{AWS::Partition}} (or a pattern): {s:?}"
            );
            assert!(!region.is_match(s), "{path}: hard-coded region in {s:?}");
        }
        // And not in comments or descriptions either, where a copy-paste would start.
        assert!(!read(path).contains("arn:aws:"), "{path}");
    }
}

#[test]
fn the_documentation_states_the_rule_state_caveat_and_leaves_only_sizing_to_measure() {
    let doc = read("deploy/cloudformation/ORGANIZATION.md");
    for needed in [
        ALL_MANAGEMENT_EVENTS,
        "is pending deletion.",
        "readOnly: true",
        "PutBucketNotificationConfiguration",
        "aws:PrincipalOrgID",
        "best effort",
        "## Sizing",
    ] {
        assert!(doc.contains(needed), "ORGANIZATION.md does not mention {needed}");
    }
    let mut section = "";
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title;
        }
        if line.contains("TBD") {
            assert_eq!(section, "Sizing", "a TBD outside Sizing: {line}");
        }
    }
    for path in [CENTRAL, MEMBER] {
        assert!(
            read(path).contains(ALL_MANAGEMENT_EVENTS) && read(path).contains("readOnly: true"),
            "{path} must explain the rule state"
        );
    }
}

#[test]
fn the_example_configuration_names_what_the_templates_create() {
    let text = read("deploy/cloudformation/org-config.example.toml");
    let doc: toml::Table = text.parse().unwrap();
    let central = template(CENTRAL);
    let name = default_of(&central, "Name").as_str().unwrap();
    let sources = doc["sources"].as_array().unwrap();
    let kind_url: Vec<(&str, &str)> = sources
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["queue_url"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kind_url.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["eventbridge_sqs", "s3_sqs"]
    );
    assert!(kind_url[0].1.ends_with(&format!("/{name}-events")));
    assert!(kind_url[1].1.ends_with(&format!("/{name}-trail-files")));
    assert_eq!(
        props(&central, "EventsQueue")["QueueName"]["Fn::Sub"],
        "${Name}-events"
    );
    assert_eq!(
        props(&central, "TrailFilesQueue")["QueueName"]["Fn::Sub"],
        "${Name}-trail-files"
    );
    let role = default_of(&template(MEMBER), "RoleName")
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        doc["accounts"]["role_arn_template"].as_str().unwrap(),
        format!("arn:${{partition}}:iam::${{account}}:role/{role}")
    );
    assert!(doc.get("lease").is_none(), "queue sources need no lease");

    // Once trailguard knows [[sources]] and [accounts], the example must validate as it is;
    // until then the only problems allowed are those two sections being unknown.
    let known = trailguard::config::known_keys();
    let understood =
        known.iter().any(|k| k.starts_with("accounts.")) && known.iter().any(|k| k.starts_with("sources"));
    match trailguard::config::load_text(&text, Vec::new()) {
        Ok(_) => {}
        Err(e) if !understood => {
            for p in &e.problems {
                assert!(
                    p.key.starts_with("sources") || p.key.starts_with("accounts"),
                    "the example has a problem besides the sections to come: {p}"
                );
            }
        }
        Err(e) => panic!("org-config.example.toml: {e}"),
    }
}
