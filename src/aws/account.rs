//! Which accounts and regions there are: `organizations:ListAccounts` (active accounts of the
//! organization) and `account:ListRegions` (regions enabled in an account).

use aws_sdk_account::types::RegionOptStatus;
use aws_sdk_organizations::types::AccountStatus;

use super::{Aws, AwsError, RetryPolicy, Service, call};

/// Every active account of the organization (paged, 20 at a time, until there is no token:
/// pages may be empty).
pub async fn organization_accounts(aws: &Aws, region: &str) -> Result<Vec<String>, AwsError> {
    let client = aws.organizations(region);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = call(
            &RetryPolicy::ACTION,
            Service::Organizations,
            "ListAccounts",
            || {
                client
                    .list_accounts()
                    .max_results(20)
                    .set_next_token(token.clone())
                    .send()
            },
        )
        .await?;
        out.extend(page.accounts().iter().filter_map(|a| {
            let active = a.status().is_none_or(|s| *s == AccountStatus::Active);
            a.id().filter(|_| active).map(str::to_owned)
        }));
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The regions enabled in `account` (by default or opted in), through its role.
pub async fn enabled_regions(aws: &Aws, account: &str, region: &str) -> Result<Vec<String>, AwsError> {
    let client = aws.account_in(Some(account), region);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = call(&RetryPolicy::ACTION, Service::Account, "ListRegions", || {
            client
                .list_regions()
                .region_opt_status_contains(RegionOptStatus::Enabled)
                .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
                .max_results(50)
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        out.extend(
            page.regions()
                .iter()
                .filter_map(|r| r.region_name().map(str::to_owned)),
        );
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => {
                out.sort();
                out.dedup();
                return Ok(out);
            }
        }
    }
}
