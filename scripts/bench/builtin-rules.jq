# The built-in rules of trailguard as a jq filter, producing the same findings as
# `trailguard scan` (rule id and event id per line), for the benchmark baseline.
def succeeded: (.errorCode == null);
. as $rec
| {event_id: .eventID, rule_id: (
(if ((.eventSource // "") | startswith("kms"))
    and ((.errorMessage // "") | (endswith(" is pending deletion.") or endswith(" is pending replica deletion.")))
 then "kms_pending_deletion_use" else empty end),
(if .eventSource == "kms.amazonaws.com" and .eventName == "DisableKey" and succeeded then "kms_key_disabled" else empty end),
(if .eventSource == "kms.amazonaws.com" and .eventName == "ScheduleKeyDeletion" and succeeded then "kms_key_deletion_scheduled" else empty end),
(if .eventSource == "kms.amazonaws.com" and (.eventName == "DeleteAlias" or .eventName == "UpdateAlias" or .eventName == "UntagResource" or .eventName == "TagResource") and succeeded
 then "kms_protection_removed" else empty end),
(if .eventSource == "iam.amazonaws.com" and .eventName == "UpdateAccessKey" and .requestParameters.status == "Active" and succeeded
 then "iam_access_key_reactivated" else empty end),
(if .eventSource == "iam.amazonaws.com" and .eventName == "CreateAccessKey" and .userIdentity.type == "Root"
    and (.requestParameters.userName == null) and succeeded then "iam_root_access_key_created" else empty end)
)}
