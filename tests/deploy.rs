//! The deployment artifacts hold in a real account: they speak of metrics and config keys that
//! exist; the CloudFormation task definition has a health check ECS accepts, durable state on
//! EFS, the lease, and the configuration document; IAM grants exactly what the configured
//! features call (read from `src/aws/*.rs`), in the configured regions and partition; the
//! systemd unit does not restart a bad configuration forever; `.dockerignore` keeps the build
//! context small.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use serde_json::{Value as J, json};

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", root())).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Metrics and config keys.

/// Every `trailguard_*` name defined in `src/telemetry/names.rs`.
fn defined_metrics() -> BTreeSet<String> {
    read("src/telemetry/names.rs")
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|n| n.starts_with("trailguard_"))
        .map(str::to_owned)
        .collect()
}

fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("trailguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alerts_and_dashboard_use_only_metrics_trailguard_exports() {
    let defined = defined_metrics();
    assert!(defined.len() >= 15, "{defined:?}");
    for file in [
        "deploy/prometheus/trailguard-alerts.yml",
        "deploy/prometheus/trailguard-alerts.test.yml",
        "deploy/grafana/trailguard-dashboard.json",
    ] {
        let used = used_metrics(&read(file));
        assert!(!used.is_empty(), "{file} uses no metric");
        let unknown: Vec<_> = used.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics trailguard does not export: {unknown:?}"
        );
    }
}

#[test]
fn deploy_environment_names_real_config_keys() {
    // Every TRAILGUARD__SECTION__KEY in the task definition and container config must be a key
    // `trailguard validate` knows, or the container would exit 64.
    let known = trailguard::config::known_keys();
    for file in [
        "deploy/cloudformation/trailguard.yaml",
        "deploy/container/Dockerfile",
        "deploy/container/build-image.sh",
        "systemd/trailguard.service",
        "systemd/trailguard.env.example",
    ] {
        let text = read(file);
        for var in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("TRAILGUARD__"))
        {
            let key = var
                .trim_start_matches("TRAILGUARD__")
                .to_lowercase()
                .replacen("__", ".", 1);
            assert!(known.contains(&key), "{file}: {var} is not a config key ({key})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CloudFormation template, parsed as CloudFormation reads it.

/// The template as JSON, short-form tags (`!Ref`, `!Sub`, ...) turned into their long form.
fn template() -> J {
    let y: serde_yaml::Value = serde_yaml::from_str(&read("deploy/cloudformation/trailguard.yaml")).unwrap();
    to_json(&y)
}

fn to_json(v: &serde_yaml::Value) -> J {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => n
            .as_i64()
            .map(J::from)
            .unwrap_or_else(|| J::from(n.as_f64().unwrap())),
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(s) => J::Array(s.iter().map(to_json).collect()),
        Y::Mapping(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let k = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(&t.value);
            match name {
                "Ref" | "Condition" => obj(name, inner),
                "GetAtt" => match inner {
                    J::String(s) => {
                        let (a, b) = s.split_once('.').unwrap();
                        json!({"Fn::GetAtt": [a, b]})
                    }
                    other => json!({"Fn::GetAtt": other}),
                },
                _ => obj(&format!("Fn::{name}"), inner),
            }
        }
    }
}

fn obj(key: &str, value: J) -> J {
    J::Object(std::iter::once((key.to_owned(), value)).collect())
}

/// One stack: the template with parameter values, pseudo parameters, and the conditions they
/// decide, evaluated as CloudFormation does.
struct Stack {
    t: J,
    params: HashMap<String, J>,
}

const NO_VALUE: &str = "\u{0}NoValue";

impl Stack {
    fn new(overrides: &[(&str, &str)]) -> Self {
        Self::in_partition("aws", "eu-west-1", overrides)
    }

    fn in_partition(partition: &str, region: &str, overrides: &[(&str, &str)]) -> Self {
        let t = template();
        let mut params = HashMap::new();
        // As CloudFormation passes them: lists split on commas (empty items kept), numbers as text.
        let value = |name: &str, text: &str| -> J {
            if t["Parameters"][name]["Type"]
                .as_str()
                .unwrap_or("")
                .contains("List")
            {
                J::Array(text.split(',').map(|s| json!(s.trim())).collect())
            } else {
                json!(text)
            }
        };
        for (name, p) in t["Parameters"].as_object().unwrap() {
            let default = match p.get("Default") {
                Some(J::Number(n)) => n.to_string(),
                Some(J::String(s)) => s.clone(),
                None => String::new(),
                Some(other) => panic!("{name}: default {other}"),
            };
            params.insert(name.clone(), value(name, &default));
        }
        params.insert("ImageUri".into(), json!("registry/trailguard:1"));
        params.insert("ClusterName".into(), json!("cluster"));
        params.insert("VpcId".into(), json!("vpc-1"));
        params.insert("Subnets".into(), json!(["subnet-a", "subnet-b"]));
        params.insert("ScrapeSecurityGroupId".into(), json!("sg-0123"));
        for (k, v) in overrides {
            assert!(params.contains_key(*k), "no parameter {k}");
            params.insert((*k).into(), value(k, v));
        }
        params.insert("AWS::Partition".into(), json!(partition));
        params.insert("AWS::Region".into(), json!(region));
        params.insert("AWS::AccountId".into(), json!("123456789012"));
        params.insert("AWS::StackName".into(), json!("tg"));
        let suffix = if partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        params.insert("AWS::URLSuffix".into(), json!(suffix));
        Self { t, params }
    }

    fn resource(&self, name: &str) -> &J {
        let r = &self.t["Resources"][name];
        assert!(r.is_object(), "no resource {name}");
        r
    }

    fn exists(&self, name: &str) -> bool {
        match self.t["Resources"][name].get("Condition") {
            None => true,
            Some(c) => self.cond(c.as_str().unwrap()),
        }
    }

    fn cond(&self, name: &str) -> bool {
        let c = &self.t["Conditions"][name];
        assert!(!c.is_null(), "no condition {name}");
        self.eval(c)
            .as_bool()
            .unwrap_or_else(|| panic!("condition {name} is not a boolean"))
    }

    fn sub(&self, text: &str, vars: &serde_json::Map<String, J>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').unwrap() + i;
            let name = &rest[i + 2..end];
            let value = match vars.get(name) {
                Some(v) => self.eval(v),
                None => self.eval(&json!({"Ref": name})),
            };
            out.push_str(
                value
                    .as_str()
                    .unwrap_or_else(|| panic!("${{{name}}} is not a string")),
            );
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Evaluates intrinsic functions; a resource's Ref or attribute becomes `<Name>` or
    /// `<Name.Attr>`, `AWS::NoValue` removes the entry.
    fn eval(&self, v: &J) -> J {
        match v {
            J::Array(a) => J::Array(
                a.iter()
                    .map(|x| self.eval(x))
                    .filter(|x| x.as_str() != Some(NO_VALUE))
                    .collect(),
            ),
            J::Object(o) if o.len() == 1 => {
                let (k, arg) = o.iter().next().unwrap();
                match k.as_str() {
                    "Ref" => {
                        let name = arg.as_str().unwrap();
                        if name == "AWS::NoValue" {
                            return json!(NO_VALUE);
                        }
                        match self.params.get(name) {
                            Some(p) => p.clone(),
                            None => {
                                assert!(self.t["Resources"][name].is_object(), "Ref to nothing: {name}");
                                assert!(self.exists(name), "Ref to {name}, which does not exist here");
                                json!(format!("<{name}>"))
                            }
                        }
                    }
                    "Fn::GetAtt" => {
                        let name = arg[0].as_str().unwrap();
                        assert!(self.exists(name), "GetAtt of {name}, which does not exist here");
                        json!(format!("<{name}.{}>", arg[1].as_str().unwrap()))
                    }
                    "Condition" => J::Bool(self.cond(arg.as_str().unwrap())),
                    "Fn::Equals" => J::Bool(self.eval(&arg[0]) == self.eval(&arg[1])),
                    "Fn::Not" => J::Bool(!self.eval(&arg[0]).as_bool().unwrap()),
                    "Fn::And" => J::Bool(
                        arg.as_array()
                            .unwrap()
                            .iter()
                            .all(|c| self.eval(c).as_bool().unwrap()),
                    ),
                    "Fn::Or" => J::Bool(
                        arg.as_array()
                            .unwrap()
                            .iter()
                            .any(|c| self.eval(c).as_bool().unwrap()),
                    ),
                    "Fn::If" => {
                        if self.cond(arg[0].as_str().unwrap()) {
                            self.eval(&arg[1])
                        } else {
                            self.eval(&arg[2])
                        }
                    }
                    "Fn::Join" => {
                        let sep = arg[0].as_str().unwrap();
                        let parts: Vec<String> = self
                            .eval(&arg[1])
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_str().unwrap().to_owned())
                            .collect();
                        json!(parts.join(sep))
                    }
                    "Fn::Split" => {
                        let s = self.eval(&arg[1]);
                        json!(
                            s.as_str()
                                .unwrap()
                                .split(arg[0].as_str().unwrap())
                                .collect::<Vec<_>>()
                        )
                    }
                    "Fn::Select" => {
                        let i = self.eval(&arg[0]);
                        let i = i
                            .as_u64()
                            .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                            .unwrap();
                        self.eval(&arg[1])[i as usize].clone()
                    }
                    "Fn::Sub" => match arg {
                        J::String(s) => json!(self.sub(s, &serde_json::Map::new())),
                        J::Array(a) => json!(self.sub(a[0].as_str().unwrap(), a[1].as_object().unwrap())),
                        _ => panic!("Fn::Sub {arg}"),
                    },
                    "Fn::FindInMap" => {
                        let keys: Vec<J> = arg.as_array().unwrap().iter().map(|k| self.eval(k)).collect();
                        let v = &self.t["Mappings"][keys[0].as_str().unwrap()][keys[1].as_str().unwrap()]
                            [keys[2].as_str().unwrap()];
                        assert!(!v.is_null(), "FindInMap {keys:?}");
                        v.clone()
                    }
                    _ => J::Object(std::iter::once((k.clone(), self.eval(arg))).collect()),
                }
            }
            J::Object(o) => J::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.eval(v)))
                    .filter(|(_, v)| v.as_str() != Some(NO_VALUE))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn props(&self, name: &str) -> J {
        self.eval(&self.resource(name)["Properties"])
    }

    fn container(&self) -> J {
        let c = self.props("TaskDefinition")["ContainerDefinitions"][0].clone();
        assert_eq!(c["Name"], "trailguard");
        c
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.container()["Environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["Name"].as_str().unwrap().to_owned(),
                    e["Value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The task role's policies that exist in this stack: name → the statements.
    fn task_policies(&self) -> BTreeMap<String, Vec<J>> {
        let mut out = BTreeMap::new();
        for (name, r) in self.t["Resources"].as_object().unwrap() {
            if r["Type"] != "AWS::IAM::Policy" || !self.exists(name) {
                continue;
            }
            let p = self.props(name);
            if p["Roles"] != json!(["<TaskRole>"]) {
                continue;
            }
            let statements = p["PolicyDocument"]["Statement"].as_array().unwrap().clone();
            out.insert(p["PolicyName"].as_str().unwrap().to_owned(), statements);
        }
        out
    }
}

fn actions(statements: &[J], effect: &str) -> BTreeSet<String> {
    statements
        .iter()
        .filter(|s| s["Effect"] == effect)
        .flat_map(|s| match &s["Action"] {
            J::String(a) => vec![a.clone()],
            J::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
            other => panic!("Action {other}"),
        })
        .collect()
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn health_check_is_one_ecs_accepts_and_the_image_can_run() {
    let s = Stack::new(&[]);
    let hc = &s.container()["HealthCheck"];
    let cmd: Vec<&str> = hc["Command"]
        .as_array()
        .expect("HealthCheck.Command is a list")
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    // ECS: the first element is CMD (exec form) or CMD-SHELL (needs /bin/sh, which the image
    // does not have); the rest is the command.
    assert_eq!(
        cmd[0], "CMD",
        "ECS needs CMD first (the image has no shell for CMD-SHELL): {cmd:?}"
    );
    assert_eq!(
        &cmd[1..],
        ["/trailguard", "health", "--live"],
        "a liveness probe of the image's binary"
    );
    let interval = hc["Interval"].as_u64().unwrap();
    let timeout = hc["Timeout"].as_u64().unwrap();
    let retries = hc["Retries"].as_u64().unwrap();
    let start = hc["StartPeriod"].as_u64().unwrap();
    assert!((5..=300).contains(&interval), "Interval {interval}");
    assert!(
        (2..=60).contains(&timeout) && timeout < interval,
        "Timeout {timeout}"
    );
    assert!((1..=10).contains(&retries), "Retries {retries}");
    assert!(start <= 300, "StartPeriod {start}");
    // The binary is where the image puts it, and the command parses: against a port where no
    // daemon listens it says "not healthy" (1), not "usage" (2).
    assert!(read("deploy/container/Dockerfile").contains("COPY --from=build /out/trailguard /trailguard"));
    assert!(read("deploy/container/build-image.sh").contains("\"$rootfs/trailguard\""));
    let out = Command::new(env!("CARGO_BIN_EXE_trailguard"))
        .args(&cmd[2..])
        .env("TRAILGUARD__SERVER__LISTEN", "127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same probe in the Dockerfile.
    assert!(
        read("deploy/container/Dockerfile").contains(r#"CMD ["/trailguard", "health", "--live"]"#),
        "Dockerfile HEALTHCHECK differs from the task definition's"
    );
    // Stopping: SIGTERM, then the grace period, well before ECS's SIGKILL (Fargate: at most 120 s).
    let c = s.container();
    let stop = c["StopTimeout"].as_u64().unwrap();
    let grace = humantime::parse_duration(&s.env()["TRAILGUARD__SERVER__SHUTDOWN_GRACE"]).unwrap();
    assert!(
        stop <= 120 && stop > grace.as_secs() + 10,
        "StopTimeout {stop}, grace {grace:?}"
    );
}

#[test]
fn state_is_on_encrypted_efs_through_an_access_point_owned_by_the_image_user() {
    let s = Stack::new(&[]);
    let td = s.props("TaskDefinition");
    let c = s.container();
    let env = s.env();
    let state_dir = &env["TRAILGUARD__STATE__DIR"];
    assert_eq!(state_dir, "/var/lib/trailguard");
    let mount = c["MountPoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["ContainerPath"] == state_dir.as_str())
        .expect("the state directory is mounted");
    assert_eq!(mount["ReadOnly"], false);
    assert_eq!(
        c["ReadonlyRootFilesystem"], true,
        "only the state volume is written"
    );
    assert_eq!(c["User"], "65532:65532");
    let volume = td["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == mount["SourceVolume"])
        .unwrap();
    let efs = &volume["EFSVolumeConfiguration"];
    assert_eq!(efs["TransitEncryption"], "ENABLED");
    assert_eq!(efs["AuthorizationConfig"]["IAM"], "ENABLED");
    assert!(
        efs.get("RootDirectory").is_none_or(|r| r == "/"),
        "the access point sets the root"
    );
    assert_eq!(efs["FilesystemId"], "<StateFileSystem>");
    assert_eq!(efs["AuthorizationConfig"]["AccessPointId"], "<StateAccessPoint>");

    let fs = s.props("StateFileSystem");
    assert_eq!(fs["Encrypted"], true);
    assert_eq!(
        s.resource("StateFileSystem")["DeletionPolicy"],
        "Retain",
        "state outlives the stack"
    );
    let ap = s.props("StateAccessPoint");
    assert_eq!(ap["FileSystemId"], "<StateFileSystem>");
    assert_eq!(ap["PosixUser"], json!({"Uid": "65532", "Gid": "65532"}));
    assert_ne!(ap["RootDirectory"]["Path"], "/");
    assert_eq!(
        ap["RootDirectory"]["CreationInfo"],
        json!({"OwnerUid": "65532", "OwnerGid": "65532", "Permissions": "0700"})
    );
    // The image's user is 65532 too.
    assert!(read("deploy/container/Dockerfile").contains("USER 65532:65532"));

    // A mount target per subnet (here two), reachable over NFS from the task's group only.
    assert!(s.exists("MountTargetA") && s.exists("MountTargetB") && !s.exists("MountTargetC"));
    let one = Stack::new(&[("Subnets", "subnet-a")]);
    assert!(one.exists("MountTargetA") && !one.exists("MountTargetB"));
    let three = Stack::new(&[("Subnets", "subnet-a,subnet-b,subnet-c")]);
    assert!(three.exists("MountTargetC"));
    assert_eq!(s.props("MountTargetB")["SubnetId"], "subnet-b");
    assert_eq!(
        s.props("MountTargetA")["SecurityGroups"],
        json!(["<StateSecurityGroup>"])
    );
    let ingress: Vec<J> = s.t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(n, r)| r["Type"] == "AWS::EC2::SecurityGroupIngress" && s.exists(n))
        .map(|(n, _)| s.props(n))
        .filter(|p| p["GroupId"] == "<StateSecurityGroup>")
        .collect();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(ingress[0]["FromPort"], 2049);
    assert_eq!(ingress[0]["SourceSecurityGroupId"], "<ServiceSecurityGroup>");
    assert!(
        s.props("StateSecurityGroup")
            .get("SecurityGroupIngress")
            .is_none()
    );

    // The task role may mount and write, through the access point only.
    let efs_policy = &s.task_policies()["trailguard-efs"];
    assert_eq!(
        actions(efs_policy, "Allow"),
        ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
            .map(String::from)
            .into()
    );
    assert_eq!(efs_policy[0]["Resource"], "<StateFileSystem.Arn>");
    assert_eq!(
        efs_policy[0]["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"],
        "<StateAccessPoint.Arn>"
    );
    assert_eq!(
        s.props("Service")["PlatformVersion"],
        "LATEST",
        "EFS needs platform 1.4.0+"
    );
}

#[test]
fn one_writer_lease_table_and_its_permissions() {
    let s = Stack::new(&[]);
    // Created by default, PAY_PER_REQUEST, lease_id the only key, no TTL (epoch milliseconds).
    assert!(s.exists("LeaseTable"));
    let t = s.props("LeaseTable");
    assert_eq!(t["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        t["KeySchema"],
        json!([{"AttributeName": "lease_id", "KeyType": "HASH"}])
    );
    assert_eq!(
        t["AttributeDefinitions"],
        json!([{"AttributeName": "lease_id", "AttributeType": "S"}])
    );
    assert!(
        t.get("TimeToLiveSpecification").is_none(),
        "expires_at is milliseconds: no TTL"
    );
    assert_eq!(
        t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(t["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(s.env()["TRAILGUARD__LEASE__TABLE"], "<LeaseTable.Arn>");
    assert_eq!(s.env()["TRAILGUARD__LEASE__DURATION"], "30s");
    let lease = &s.task_policies()["trailguard-lease"];
    assert_eq!(lease[0]["Resource"], "<LeaseTable.Arn>");
    assert_eq!(
        lease[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
        json!(["123456789012"]),
        "only this account's lease item"
    );

    // A second stack shares the first one's table.
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/tg-lease";
    let second = Stack::new(&[("LeaseTableArn", arn)]);
    assert!(!second.exists("LeaseTable"));
    assert_eq!(second.env()["TRAILGUARD__LEASE__TABLE"], arn);
    assert_eq!(second.task_policies()["trailguard-lease"][0]["Resource"], arn);

    // Without a lease: no table, no permission, no variable.
    let none = Stack::new(&[("CreateLeaseTable", "false")]);
    assert!(!none.exists("LeaseTable"));
    assert!(!none.task_policies().contains_key("trailguard-lease"));
    assert!(!none.env().contains_key("TRAILGUARD__LEASE__TABLE"));

    // One task, never two during a deployment.
    let svc = s.props("Service");
    assert_eq!(svc["DesiredCount"], 1);
    assert_eq!(svc["DeploymentConfiguration"]["MaximumPercent"], 100);
    assert_eq!(svc["DeploymentConfiguration"]["MinimumHealthyPercent"], 0);
}

#[test]
fn the_whole_configuration_comes_from_an_ssm_parameter_or_a_secret() {
    let p = &template()["Parameters"];
    assert_eq!(p["ConfigDocumentArn"]["Default"], "");
    assert!(Stack::new(&[]).container().get("Secrets").is_none());
    assert!(!Stack::new(&[]).exists("ExecutionReadsConfigDocument"));

    let ssm = "arn:aws:ssm:eu-west-1:123456789012:parameter/trailguard/config";
    let s = Stack::new(&[("ConfigDocumentArn", ssm)]);
    assert_eq!(
        s.container()["Secrets"],
        json!([{"Name": trailguard::config::DOCUMENT_ENV, "ValueFrom": ssm}])
    );
    let read_it = s.props("ExecutionReadsConfigDocument");
    assert_eq!(
        read_it["Roles"],
        json!(["<ExecutionRole>"]),
        "ECS reads it with the execution role"
    );
    let st = read_it["PolicyDocument"]["Statement"].as_array().unwrap();
    assert_eq!(actions(st, "Allow"), ["ssm:GetParameters".to_owned()].into());
    assert_eq!(st[0]["Resource"], ssm);

    let secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:trailguard-AbCdEf";
    let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let s = Stack::new(&[("ConfigDocumentArn", secret), ("ConfigDocumentKmsKeyArn", key)]);
    let st = s.props("ExecutionReadsConfigDocument")["PolicyDocument"]["Statement"].clone();
    let st = st.as_array().unwrap();
    assert_eq!(
        actions(st, "Allow"),
        ["secretsmanager:GetSecretValue", "kms:Decrypt"]
            .map(String::from)
            .into()
    );
    let decrypt = st.iter().find(|x| x["Action"] == "kms:Decrypt").unwrap();
    assert_eq!(decrypt["Resource"], key);
    assert_eq!(
        decrypt["Condition"]["StringEquals"]["kms:ViaService"],
        json!([
            "ssm.eu-west-1.amazonaws.com",
            "secretsmanager.eu-west-1.amazonaws.com"
        ])
    );
}

#[test]
fn a_document_in_the_environment_sets_rules_and_lists() {
    // What ECS does with the secret: the whole TOML document in TRAILGUARD_CONFIG_TOML, no file.
    let doc = r#"
dry_run = true
[aws]
regions = ["us-east-1", "eu-west-1"]
[kms]
protected_keys = ["alias/prod-*", "tag:trailguard:protect=true"]
allowed_principals = ["arn:aws:iam::111122223333:role/KeyAdmin"]
[[kms.exemptions]]
key = "alias/prod-legacy"
expires = "2099-12-31"
reason = "decommissioning"
[[rules]]
id = "from_the_parameter"
description = "a rule injected without rebuilding the image"
severity = "high"
pattern = '{ ($.eventSource = kms.amazonaws.com) && ($.eventName = DisableKey) }'
actions = ["notify"]
[[rules.tests]]
name = "a DisableKey"
must_match = true
event = '{"eventSource":"kms.amazonaws.com","eventName":"DisableKey"}'
"#;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trailguard"))
            .args(args)
            .env_remove("TRAILGUARD__AWS__REGIONS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let env = [(trailguard::config::DOCUMENT_ENV, doc)];
    let (code, _, err) = run(&["validate", "--config", "/nonexistent/trailguard.toml"], &env);
    assert_eq!(code, Some(0), "{err}");
    // The document's [[rules]] are read: a broken one is refused with its key. (The running
    // daemon's use of them is checked on the image by tests/validate-deploy.sh, through
    // trailguard_findings_total{rule_id=...}.)
    let broken = doc.replace("($.eventName = DisableKey)", "($.eventName = ");
    let env = [(trailguard::config::DOCUMENT_ENV, broken.as_str())];
    let (code, _, err) = run(&["validate"], &env);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("rules"), "{err}");
    // A bad document is refused like a bad file, with the key.
    let env = [(trailguard::config::DOCUMENT_ENV, "[kms]\nprotected_keys = 3\n")];
    let (code, _, err) = run(&["validate"], &env);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("kms.protected_keys"), "{err}");
}

#[test]
fn metrics_are_discoverable_and_reachable_only_from_what_the_operator_names() {
    let t = template();
    let text = read("deploy/cloudformation/trailguard.yaml");
    assert!(!text.contains("10.0.0.0/8"), "no broad default scrape network");
    for p in ["ScrapeSecurityGroupId", "ScrapeCidr"] {
        assert_eq!(t["Parameters"][p]["Default"], "", "{p} has no default");
    }
    // One of them must be named (a template rule).
    let rule = serde_json::to_string(&t["Rules"]["ScrapeSourceNamed"]).unwrap();
    assert!(
        rule.contains("ScrapeSecurityGroupId") && rule.contains("ScrapeCidr"),
        "{rule}"
    );

    let listen = |s: &Stack| port_of(&s.env()["TRAILGUARD__SERVER__LISTEN"]);
    let scrape_rules = |s: &Stack| -> Vec<J> {
        s.t["Resources"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(n, r)| r["Type"] == "AWS::EC2::SecurityGroupIngress" && s.exists(n))
            .map(|(n, _)| s.props(n))
            .filter(|p| p["GroupId"] == "<ServiceSecurityGroup>")
            .collect()
    };
    let s = Stack::new(&[]);
    assert!(
        s.props("ServiceSecurityGroup")
            .get("SecurityGroupIngress")
            .is_none()
    );
    let rules = scrape_rules(&s);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["SourceSecurityGroupId"], "sg-0123");
    assert_eq!(rules[0]["FromPort"], json!(listen(&s)));
    assert_eq!(rules[0]["ToPort"], json!(listen(&s)));
    let s = Stack::new(&[("ScrapeSecurityGroupId", ""), ("ScrapeCidr", "10.20.30.0/28")]);
    let rules = scrape_rules(&s);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["CidrIp"], "10.20.30.0/28");

    // Cloud Map: the service registers the task's metrics port in a private DNS namespace.
    let svc = s.props("Service");
    assert_eq!(
        svc["ServiceRegistries"],
        json!([{"RegistryArn": "<DiscoveryService.Arn>", "ContainerName": "trailguard", "ContainerPort": listen(&s)}])
    );
    let port = s.container()["PortMappings"][0]["ContainerPort"].clone();
    assert_eq!(port, json!(listen(&s)));
    let ds = s.props("DiscoveryService");
    assert_eq!(ds["NamespaceId"], "<DiscoveryNamespace>");
    let types: Vec<_> = ds["DnsConfig"]["DnsRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Type"].clone())
        .collect();
    assert!(
        types.contains(&json!("A")) && types.contains(&json!("SRV")),
        "{types:?}"
    );
    assert_eq!(
        s.resource("DiscoveryNamespace")["Type"],
        "AWS::ServiceDiscovery::PrivateDnsNamespace"
    );
    assert_eq!(s.props("DiscoveryNamespace")["Vpc"], "vpc-1");
}

#[test]
fn no_partition_or_region_is_hard_coded() {
    // Outside the partition table, no literal partition ARN and no region name.
    let mut t = template();
    let mappings = t.as_object_mut().unwrap().remove("Mappings").unwrap();
    let region = regex::Regex::new(r"\b(us|eu|ap|sa|ca|me|af|il|cn|mx)(-gov)?-[a-z]+-\d\b").unwrap();
    fn strings(v: &J, out: &mut Vec<String>) {
        match v {
            J::String(s) => out.push(s.clone()),
            J::Array(a) => a.iter().for_each(|x| strings(x, out)),
            J::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&t, &mut all);
    for s in &all {
        assert!(!s.contains("arn:aws:"), "hard-coded partition: {s}");
        assert!(!region.is_match(s), "hard-coded region: {s}");
    }
    // The IAM home region of every partition trailguard knows, as trailguard derives it.
    for partition in ["aws", "aws-us-gov", "aws-cn"] {
        assert_eq!(
            mappings["Partition"][partition]["IamHomeRegion"],
            trailguard::arn::iam_home_region(partition),
            "{partition}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// IAM: every action a policy grants is one trailguard's code calls for a configured feature.

/// What each feature calls (service prefix:Action). Every operation in `src/aws/*.rs` is in
/// one of them (checked below); each policy file and each template policy grants exactly its
/// feature's list.
const FEATURES: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "cloudtrail:LookupEvents",
            "kms:DescribeKey",
            "kms:CancelKeyDeletion",
        ],
    ),
    ("enable-key", &["kms:EnableKey"]),
    ("protection-aliases", &["kms:ListAliases"]),
    ("protection-tags", &["kms:ListKeys", "kms:ListResourceTags"]),
    (
        "iam-sweep-read",
        &[
            "cloudtrail:LookupEvents",
            "iam:ListUsers",
            "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed",
            "iam:ListUserTags",
            "iam:GenerateCredentialReport",
            "iam:GetCredentialReport",
        ],
    ),
    ("iam-deactivate", &["iam:UpdateAccessKey"]),
    ("iam-delete", &["iam:DeleteAccessKey"]),
    (
        "lease",
        &["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
    ),
    ("sns", &["sns:Publish"]),
];
/// Not called by trailguard, but by SNS on its behalf when it publishes to a topic encrypted
/// with a customer managed key.
const IMPLIED: &[(&str, &[&str])] = &[("kms-topic-key", &["kms:GenerateDataKey*", "kms:Decrypt"])];
/// Calls that need no permission.
const UNGATED: &[&str] = &["sts:GetCallerIdentity"];

fn feature(name: &str) -> BTreeSet<String> {
    FEATURES
        .iter()
        .chain(IMPLIED)
        .find(|(f, _)| *f == name)
        .unwrap_or_else(|| panic!("no feature {name}"))
        .1
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// The AWS operations trailguard's code calls, by IAM action: every SDK call goes through a
/// helper named with the operation (`kms("DescribeKey", ..)`, `self.iam("ListUsers", ..)`,
/// `call(.., Service::Sns, "Publish", ..)`), in the adapter for its service.
fn code_actions() -> BTreeSet<String> {
    let op = regex::Regex::new(
        r#"(?:Service::\w+\s*,|\b(?:kms|iam|dynamo|dynamodb|ddb|lease|call)\s*\()\s*"([A-Z][A-Za-z0-9]+)""#,
    )
    .unwrap();
    let mut out = BTreeSet::new();
    let dir = format!("{}/src/aws", root());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let prefix = match stem.as_str() {
            "mod" | "error" | "retry" | "config" | "limiter" => continue,
            "cloudtrail" | "kms" | "iam" | "sns" | "sts" => stem.clone(),
            "lease" | "dynamodb" => "dynamodb".to_owned(),
            other => panic!("src/aws/{other}.rs: which IAM service prefix does it call? Map it here."),
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let found: BTreeSet<String> = op.captures_iter(&text).map(|c| c[1].to_owned()).collect();
        assert!(!found.is_empty(), "no operation found in {}", path.display());
        for name in found {
            // The SDK's fluent call of the same operation is in the file (the name is not stale).
            let mut snake = String::new();
            for (i, ch) in name.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(ch.to_ascii_lowercase());
            }
            assert!(
                text.contains(&format!(".{snake}(")),
                "{}: {name} named, but no .{snake}() call",
                path.display()
            );
            out.insert(format!("{prefix}:{name}"));
        }
    }
    out
}

#[test]
fn every_operation_the_code_calls_belongs_to_exactly_the_features_listed() {
    let code = code_actions();
    assert!(
        code.contains("kms:CancelKeyDeletion") && code.contains("sns:Publish"),
        "{code:?}"
    );
    let mut listed: BTreeSet<String> = FEATURES
        .iter()
        .flat_map(|(_, a)| a.iter().map(|x| x.to_string()))
        .collect();
    listed.extend(UNGATED.iter().map(|x| x.to_string()));
    assert!(
        code.contains("dynamodb:UpdateItem"),
        "the lease adapter is read: {code:?}"
    );
    let granted_not_called: Vec<_> = listed.difference(&code).collect();
    let called_not_listed: Vec<_> = code.difference(&listed).collect();
    assert!(
        granted_not_called.is_empty(),
        "listed for a feature but never called: {granted_not_called:?}"
    );
    assert!(
        called_not_listed.is_empty(),
        "called but in no feature (no policy grants it): {called_not_listed:?}"
    );
}

fn policy_file(feature: &str) -> J {
    serde_json::from_str(&read(&format!("deploy/iam/trailguard-{feature}.json"))).unwrap()
}

fn statements(doc: &J) -> Vec<J> {
    doc["Statement"].as_array().unwrap().clone()
}

fn requested_regions(st: &J) -> Option<J> {
    st["Condition"]["StringEquals"]
        .get("aws:RequestedRegion")
        .cloned()
}

#[test]
fn policy_files_for_systemd_hosts_grant_each_feature_exactly_its_calls() {
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(format!("{}/deploy/iam", root())).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(f) = name
            .strip_prefix("trailguard-")
            .and_then(|n| n.strip_suffix(".json"))
        {
            seen.insert(f.to_owned());
        }
    }
    let expected: BTreeSet<String> = FEATURES
        .iter()
        .chain(IMPLIED)
        .map(|(f, _)| f.to_string())
        .collect();
    assert_eq!(seen, expected, "one policy file per feature in deploy/iam/");
    for f in &expected {
        let st = statements(&policy_file(f));
        assert_eq!(
            actions(&st, "Allow"),
            feature(f),
            "deploy/iam/trailguard-{f}.json"
        );
        for s in st.iter().filter(|s| s["Effect"] == "Allow") {
            let action = actions(std::slice::from_ref(s), "Allow");
            let service = action
                .iter()
                .next()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned();
            let sid = s["Sid"].as_str().unwrap();
            match service.as_str() {
                // Regional calls: only in the configured regions, or IAM's home region.
                "kms" | "cloudtrail" | "iam" if f != "kms-topic-key" => {
                    let regions =
                        requested_regions(s).unwrap_or_else(|| panic!("{f}/{sid}: no aws:RequestedRegion"));
                    let home = sid.ends_with("InIamHomeRegion");
                    assert_eq!(home, service == "iam" || f.starts_with("iam-"), "{f}/{sid}");
                    if home {
                        assert_eq!(regions, "us-east-1", "{f}/{sid}");
                    }
                }
                _ => {}
            }
        }
    }
    // Keys of users tagged trailguard:exempt=true are never changed.
    for f in ["iam-deactivate", "iam-delete"] {
        let st = statements(&policy_file(f));
        let deny = st
            .iter()
            .find(|s| s["Effect"] == "Deny")
            .unwrap_or_else(|| panic!("{f}: no Deny"));
        assert_eq!(
            actions(std::slice::from_ref(deny), "Deny"),
            ["iam:DeleteAccessKey", "iam:UpdateAccessKey"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            deny["Condition"]["StringEqualsIgnoreCase"]["aws:ResourceTag/trailguard:exempt"],
            "true"
        );
    }
}

/// The features a stack's container is configured for, read from its environment (and the
/// parameters that declare what the configuration document does).
fn configured(s: &Stack) -> BTreeSet<String> {
    let env = s.env();
    let p = |k: &str| s.params[k].as_str().unwrap().to_owned();
    let mut f: BTreeSet<String> = ["base", "sns"].map(String::from).into();
    assert!(!env["TRAILGUARD__NOTIFY__SNS_TOPIC_ARN"].is_empty());
    if env["TRAILGUARD__KMS__ENABLE_AFTER_CANCEL"] == "true" || p("KmsEnableKey") == "true" {
        f.insert("enable-key".into());
    }
    match p("KmsProtection").as_str() {
        "none" => {}
        "aliases" => {
            f.insert("protection-aliases".into());
        }
        _ => {
            f.insert("protection-aliases".into());
            f.insert("protection-tags".into());
        }
    }
    if env["TRAILGUARD__IAM__ENABLED"] == "true" {
        f.insert("iam-sweep-read".into());
        match env["TRAILGUARD__IAM__ACTION"].as_str() {
            "deactivate" => {
                f.insert("iam-deactivate".into());
            }
            "delete" => {
                f.insert("iam-deactivate".into());
                f.insert("iam-delete".into());
            }
            _ => {}
        }
    }
    if env.contains_key("TRAILGUARD__LEASE__TABLE") {
        f.insert("lease".into());
    }
    if !p("AlertTopicKmsKeyArn").is_empty() {
        f.insert("kms-topic-key".into());
    }
    f
}

#[test]
fn template_grants_statements_only_for_the_features_configured() {
    let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("IamSweep", "true")],
        &[("IamSweep", "true"), ("IamAction", "deactivate")],
        &[("IamSweep", "true"), ("IamAction", "delete")],
        &[("IamSweep", "false"), ("IamAction", "delete")],
        &[("EnableAfterCancel", "true")],
        &[("KmsEnableKey", "true")],
        &[("KmsProtection", "aliases")],
        &[("KmsProtection", "tags")],
        &[("AlertTopicKmsKeyArn", key)],
        &[("AlertTopicArn", "arn:aws:sns:eu-west-1:123456789012:existing")],
        &[("CreateLeaseTable", "false")],
        &[
            ("Regions", "eu-west-1,eu-central-1"),
            ("IamSweep", "true"),
            ("IamAction", "delete"),
            ("KmsProtection", "tags"),
        ],
    ];
    for case in cases {
        let s = Stack::new(case);
        let mut granted = s.task_policies();
        granted.remove("trailguard-efs").expect("the EFS mount policy");
        let names: BTreeSet<String> = granted
            .keys()
            .map(|n| n.trim_start_matches("trailguard-").to_owned())
            .collect();
        assert_eq!(names, configured(&s), "{case:?}");
        for (name, st) in &granted {
            let f = name.trim_start_matches("trailguard-");
            assert_eq!(actions(st, "Allow"), feature(f), "{case:?}: {name}");
            // The same statements as the policy file for systemd hosts, but for this stack.
            let file_sids: BTreeSet<_> = statements(&policy_file(f))
                .iter()
                .map(|x| x["Sid"].to_string())
                .collect();
            let sids: BTreeSet<_> = st.iter().map(|x| x["Sid"].to_string()).collect();
            assert_eq!(
                sids, file_sids,
                "{case:?}: {name} and deploy/iam/trailguard-{f}.json"
            );
        }
        // Regions: the configured ones, and IAM's home region for IAM.
        let regions: Vec<J> = s.env()["TRAILGUARD__AWS__REGIONS"]
            .split(',')
            .map(|r| json!(r))
            .collect();
        for (name, st) in &granted {
            for x in st.iter().filter(|x| x["Effect"] == "Allow") {
                match requested_regions(x) {
                    Some(r) if x["Sid"].as_str().unwrap().ends_with("InIamHomeRegion") => {
                        assert_eq!(r, "us-east-1", "{case:?}: {name}")
                    }
                    Some(r) => assert_eq!(r, J::Array(regions.clone()), "{case:?}: {name}"),
                    None => {}
                }
            }
        }
        // UpdateAccessKey, when granted, comes with the Deny for exempt users.
        if let Some(st) = granted.get("trailguard-iam-deactivate") {
            let deny = st.iter().find(|x| x["Effect"] == "Deny").unwrap();
            assert_eq!(
                deny["Condition"]["StringEqualsIgnoreCase"]["aws:ResourceTag/trailguard:exempt"],
                "true"
            );
        }
    }
    // Regions default to the stack's own.
    assert_eq!(Stack::new(&[]).env()["TRAILGUARD__AWS__REGIONS"], "eu-west-1");
}

#[test]
fn partition_and_iam_home_region_are_derived() {
    for (partition, region, home) in [
        ("aws-us-gov", "us-gov-east-1", "us-gov-west-1"),
        ("aws-cn", "cn-northwest-1", "cn-north-1"),
        ("aws", "ap-south-1", "us-east-1"),
    ] {
        let s = Stack::in_partition(
            partition,
            region,
            &[
                ("IamSweep", "true"),
                ("IamAction", "delete"),
                ("KmsEnableKey", "true"),
            ],
        );
        for (name, st) in s.task_policies() {
            for x in &st {
                let resources = match &x["Resource"] {
                    J::Array(a) => a.clone(),
                    r => vec![r.clone()],
                };
                for r in resources {
                    let r = r.as_str().unwrap();
                    assert!(
                        r == "*" || r.starts_with('<') || r.starts_with(&format!("arn:{partition}:")),
                        "{name}: {r}"
                    );
                }
                if let Some(r) = requested_regions(x) {
                    let want = if x["Sid"].as_str().unwrap().ends_with("InIamHomeRegion") {
                        json!(home)
                    } else {
                        json!([region])
                    };
                    assert_eq!(r, want, "{partition} {name}");
                }
            }
        }
        assert_eq!(home, trailguard::arn::iam_home_region(partition));
    }
}

// ---------------------------------------------------------------------------------------------
// systemd.

fn unit() -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read("systemd/trailguard.service").lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.to_owned(), v.to_owned()));
        }
    }
    out
}

fn unit_value(section: &str, key: &str) -> Option<String> {
    unit()
        .into_iter()
        .rev()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
}

fn seconds(v: &str) -> u64 {
    humantime::parse_duration(v)
        .map(|d| d.as_secs())
        .unwrap_or_else(|_| v.parse().unwrap())
}

#[test]
fn systemd_does_not_restart_what_a_restart_cannot_fix() {
    // run validates the configuration itself (exit 64); a validate in ExecStartPre would fail
    // outside RestartPreventExitStatus and restart forever.
    assert!(unit_value("Service", "ExecStartPre").is_none(), "no ExecStartPre");
    assert!(
        unit_value("Service", "ExecStart")
            .unwrap()
            .contains("trailguard run")
    );
    let prevent: BTreeSet<u8> = unit_value("Service", "RestartPreventExitStatus")
        .unwrap()
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(
        prevent.contains(&trailguard::cli::EXIT_CONFIG) && prevent.contains(&trailguard::cli::EXIT_STATE),
        "{prevent:?}"
    );
    assert_eq!(unit_value("Service", "Restart").as_deref(), Some("on-failure"));
    // Any other crash loop ends too.
    assert!(unit_value("Unit", "StartLimitIntervalSec").is_some());
    assert!(
        unit_value("Unit", "StartLimitBurst")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    // The watchdog holds for every poll interval trailguard accepts (run exits 64 otherwise).
    let watchdog = seconds(&unit_value("Service", "WatchdogSec").unwrap());
    let max_poll = trailguard::sources::config::WATCHDOG.as_secs() / 2;
    assert!(
        watchdog >= 2 * max_poll,
        "WatchdogSec {watchdog} < 2 x {max_poll}"
    );
    // A rescue in flight finishes before SIGKILL.
    let stop = seconds(&unit_value("Service", "TimeoutStopSec").unwrap());
    assert!(stop > 30, "TimeoutStopSec {stop} <= the default shutdown_grace");
    // Static keys in the environment file are not the documented way.
    let env = read("systemd/trailguard.env.example");
    assert!(!env.contains("AWS_SECRET_ACCESS_KEY"), "{env}");
    for dropin in ["systemd/credentials-file.conf", "systemd/roles-anywhere.conf"] {
        assert!(read(dropin).contains("\nLoadCredentialEncrypted="), "{dropin}");
    }
}

// ---------------------------------------------------------------------------------------------
// .dockerignore.

fn ignored(patterns: &[String], path: &str) -> bool {
    fn glob(p: &str, s: &str) -> bool {
        match (p.split_once('*'), p.is_empty()) {
            (_, true) => s.is_empty(),
            (None, _) => p == s,
            (Some((head, tail)), _) => {
                s.starts_with(head) && (0..=s.len() - head.len()).any(|i| glob(tail, &s[head.len() + i..]))
            }
        }
    }
    let mut out = false;
    for p in patterns {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        let p = p.trim_end_matches('/');
        let any_depth = p.starts_with("**/");
        let p = p.trim_start_matches("**/");
        let parts: Vec<&str> = path.split('/').collect();
        let hit = (0..parts.len()).any(|end| {
            (0..=if any_depth { end } else { 0 })
                .any(|start| glob(p, &parts[start..=end].join("/")) && (any_depth || start == 0))
        });
        if hit {
            out = !neg;
        }
    }
    out
}

#[test]
fn dockerignore_keeps_build_output_vcs_venvs_and_state_out_and_the_sources_in() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for out in [
        "target/release/trailguard",
        "tests/sandbox/target/debug/x",
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-deploy/bin/checkov",
        "state/trailguard.redb",
        "trailguard.redb",
        "bench/corpus.ndjson",
        "scripts/__pycache__/x.pyc",
    ] {
        assert!(ignored(&patterns, out), "{out} is sent to the Docker build");
    }
    // What the Dockerfile builds and copies.
    for keep in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/rules/builtin.toml",
        "benches/rules.rs",
        "tests/sandbox/Cargo.toml",
        "tests/sandbox/src/lib.rs",
        "examples/parse_only.rs",
        "deploy/container/trailguard.toml",
    ] {
        assert!(
            std::path::Path::new(&format!("{}/{keep}", root())).exists(),
            "{keep}"
        );
        assert!(
            !ignored(&patterns, keep),
            "{keep} is left out of the Docker build"
        );
    }
}
