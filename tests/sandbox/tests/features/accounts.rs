//! Several accounts: Organizations paging, AssumeRole as strict as AWS, and calls made with
//! assumed credentials acting, and recorded, in the role's account.

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn list_accounts_pages_twenty_at_a_time() {
    let sb = sandbox().await;
    let orgs = aws_sdk_organizations::Client::new(&sdk(&sb, ADMIN, "us-east-1").await);
    // The organization and one account through the SDK, twenty more through the control API.
    let made = orgs
        .create_organization()
        .send()
        .await
        .unwrap()
        .organization
        .unwrap();
    let status = orgs
        .create_account()
        .account_name("audit")
        .email("audit@example.com")
        .send()
        .await
        .unwrap()
        .create_account_status
        .unwrap();
    let audit = status.account_id().unwrap().to_owned();
    let org = control(
        &sb,
        "POST",
        "/_sandbox/organization/accounts",
        json!({"count": 20}),
    )
    .await;
    assert_eq!(org["accounts"].as_array().unwrap().len(), 20);
    assert_eq!(org["organization_id"], made.id().unwrap());

    let first = orgs.list_accounts().send().await.unwrap();
    assert_eq!(first.accounts().len(), 20, "at most 20 a page");
    let token = first.next_token().expect("more to come").to_owned();
    let second = orgs.list_accounts().next_token(&token).send().await.unwrap();
    assert_eq!(
        second.accounts().len(),
        2,
        "21 members and the management account"
    );
    assert!(second.next_token().is_none());

    let all: Vec<String> = orgs
        .list_accounts()
        .into_paginator()
        .page_size(7)
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .iter()
        .flat_map(|page| page.accounts())
        .map(|a| a.id().unwrap().to_owned())
        .collect();
    assert_eq!(all.len(), 22);
    assert!(all.contains(&ACCOUNT.to_owned()));
    assert!(all.contains(&audit));
    for member in org["accounts"].as_array().unwrap() {
        assert!(all.contains(&member.as_str().unwrap().to_owned()));
    }
    for bad in [0, 21] {
        let err = orgs
            .list_accounts()
            .max_results(bad)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_invalid_input_exception(), "MaxResults {bad}: {err:?}");
    }
    let err = orgs
        .list_accounts()
        .next_token("garbage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_input_exception(), "{err:?}");
    assert_eq!(sb.state().counter("organizations.ListAccounts"), 9);
    assert_eq!(
        sb.state().counter("organizations.CreateAccount"),
        1,
        "the control API's calls are not counted"
    );
}

fn record_of(e: &aws_sdk_cloudtrail::types::Event) -> Value {
    serde_json::from_str(e.cloud_trail_event().unwrap()).unwrap()
}

#[tokio::test]
async fn assumed_roles_act_in_their_account_and_trust_is_checked() {
    let sb = sandbox().await;
    control(
        &sb,
        "POST",
        "/_sandbox/settings",
        json!({"lookup_events_rate": 0}),
    )
    .await;
    let org = sb.create_accounts(2, Some("ext-7f3a")).await.unwrap();
    let (member, other) = (org.accounts[0].clone(), org.accounts[1].clone());
    let mgmt = sdk(&sb, ADMIN, "eu-west-1").await;
    let sts = aws_sdk_sts::Client::new(&mgmt);
    let assume = |arn: String, external_id: Option<&str>| {
        let sts = sts.clone();
        let external_id = external_id.map(str::to_owned);
        async move {
            sts.assume_role()
                .role_arn(arn)
                .role_session_name("trailguard-remediation")
                .set_external_id(external_id)
                .send()
                .await
        }
    };
    let role = format!("arn:aws:iam::{member}:role/trailguard");
    for (arn, ext, why) in [
        (role.clone(), None, "missing external id"),
        (role.clone(), Some("wrong"), "wrong external id"),
        (
            format!("arn:aws:iam::{member}:role/no-such-role"),
            Some("ext-7f3a"),
            "no such role",
        ),
        (
            "arn:aws:iam::999999999999:role/trailguard".into(),
            Some("ext-7f3a"),
            "no such account",
        ),
    ] {
        let err = assume(arn.clone(), ext).await.unwrap_err();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let err = err.into_service_error();
        assert_eq!(err.meta().code(), Some("AccessDenied"), "{why}: {err:?}");
        assert_eq!(status, Some(403), "{why}");
        assert_eq!(
            err.meta().message().unwrap(),
            format!(
                "User: arn:aws:iam::{ACCOUNT}:user/sandbox is not authorized to perform: sts:AssumeRole on resource: {arn}"
            )
        );
    }
    // A caller outside the trusted account is refused even with the right external id.
    sb.state().set_identity(
        "AKIASTRANGER",
        trailguard_sandbox::IdentitySpec::IAMUser {
            user_name: "eve".into(),
            account_id: Some(other.clone()),
        },
    );
    let stranger = aws_sdk_sts::Client::new(&sdk(&sb, "AKIASTRANGER", "eu-west-1").await);
    let err = stranger
        .assume_role()
        .role_arn(&role)
        .role_session_name("x1")
        .external_id("ext-7f3a")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("AccessDenied"));

    // The SDK's own AssumeRoleProvider works against the sandbox too.
    let provider = aws_config::sts::AssumeRoleProvider::builder(&role)
        .session_name("provider")
        .external_id("ext-7f3a")
        .configure(&mgmt)
        .build()
        .await;
    let via_provider = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(sb.endpoint_url())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(provider)
        .load()
        .await;
    let who = aws_sdk_sts::Client::new(&via_provider)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.account(), Some(member.as_str()));
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:sts::{member}:assumed-role/trailguard/provider").as_str())
    );

    let out = assume(role.clone(), Some("ext-7f3a")).await.unwrap();
    let session_arn = format!("arn:aws:sts::{member}:assumed-role/trailguard/trailguard-remediation");
    assert_eq!(out.assumed_role_user().unwrap().arn(), session_arn);
    let c = out.credentials.unwrap();
    let assumed = sdk_with(
        &sb,
        aws_sdk_kms::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "assumed",
        ),
        "eu-west-1",
    )
    .await;

    // Keys made with the role's credentials live in the member account.
    let kms = aws_sdk_kms::Client::new(&assumed);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    assert_eq!(key.aws_account_id(), Some(member.as_str()));
    assert!(
        key.arn()
            .unwrap()
            .starts_with(&format!("arn:aws:kms:eu-west-1:{member}:key/"))
    );
    let mgmt_keys = aws_sdk_kms::Client::new(&mgmt).list_keys().send().await.unwrap();
    assert!(mgmt_keys.keys().iter().all(|k| k.key_id() != Some(key.key_id())));
    kms.disable_key().key_id(key.key_id()).send().await.unwrap();

    // ... and their records are the member account's, as the assumed role.
    let ct = aws_sdk_cloudtrail::Client::new(&assumed);
    let events = ct
        .lookup_events()
        .lookup_attributes(
            LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::EventSource)
                .attribute_value("kms.amazonaws.com")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let names: Vec<_> = events.events().iter().map(|e| e.event_name().unwrap()).collect();
    assert_eq!(names, ["DisableKey", "CreateKey"]);
    let r = record_of(&events.events()[0]);
    assert_eq!(r["recipientAccountId"], member.as_str());
    assert_eq!(r["userIdentity"]["type"], "AssumedRole");
    assert_eq!(r["userIdentity"]["arn"], session_arn.as_str());
    assert_eq!(r["userIdentity"]["accountId"], member.as_str());
    assert_eq!(r["userIdentity"]["accessKeyId"], c.access_key_id());
    assert_eq!(
        r["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
        format!("arn:aws:iam::{member}:role/trailguard")
    );
    assert_eq!(r["resources"][0]["ARN"], key.arn().unwrap());
    assert_eq!(events.events()[0].username(), Some("trailguard-remediation"));
    let mgmt_history = aws_sdk_cloudtrail::Client::new(&mgmt)
        .lookup_events()
        .send()
        .await
        .unwrap();
    let mgmt_names: Vec<_> = mgmt_history
        .events()
        .iter()
        .map(|e| e.event_name().unwrap())
        .collect();
    assert_eq!(
        mgmt_names,
        ["ListKeys"],
        "the member's calls stay out of the management account's history"
    );
}
