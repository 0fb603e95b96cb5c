"""A decision for every IAI error code (both API versions, from the official SDK's lists) and the common API 3.0 codes.

Each code -> (kind, operator message). `{person}` and `{group}` are filled in; an empty message uses the
cloud's own text. Kinds (how errors.py types them). "Resent" is the transport sending the same bytes again
(`CloudError.resend`); "operator" is whether the result says the command may be tried again (`retryable`):

| kind | error | resent | operator | note |
|---|---|---|---|---|
| auth, token, clock | cloud_auth | clock and token: once, after correcting | no | account status `auth_failed` |
| rate | cloud_rate_limited | yes, >= 1 s apart | yes | never applied |
| conflict | cloud_unavailable | yes | yes | another call on the person: never applied |
| server | cloud_unavailable | reads yes; writes never (outcome unknown) | yes | may come after the change was made |
| later | cloud_unavailable | yes | yes | the service says "try again later" |
| person_missing, face_limit, person_exists | person_not_found, person_face_limit, - | no | no | |
| no_face, too_small, quality | no_face, face_too_small, cloud_quality | never (same bytes, same answer) | yes (a new capture may pass) | |
| in_arrears, not_activated, suspended, region | cloud_rejected | no | no | account status of that name |
| config, rejected | cloud_rejected | no | no | a setup problem / a request the cloud refuses |
"""

from __future__ import annotations

DECISIONS: dict[str, tuple[str, str]] = {
    # --- authentication and the account -------------------------------------------------------------------------
    "AuthFailure": ("auth", "the cloud refused the credentials: check tencentcloud_secret_id and tencentcloud_secret_key"),
    "AuthFailure.InvalidAuthorization": ("auth", "the Authorization header was refused: check the credentials and cloud.endpoint"),
    "AuthFailure.InvalidSecretId": ("auth", "the SecretId is malformed: check the tencentcloud_secret_id credential"),
    "AuthFailure.MFAFailure": ("auth", "the key requires multi-factor authentication: use an API key without MFA for devices"),
    "AuthFailure.SecretIdNotFound": ("auth", "the SecretId is unknown: check the tencentcloud_secret_id credential"),
    "AuthFailure.SignatureExpire": ("clock", "the device clock is more than 5 minutes off: fix its time (NTP)"),
    "AuthFailure.SignatureFailure": ("auth", "the signature was refused: check the tencentcloud_secret_key credential"),
    "AuthFailure.TokenFailure": ("token", "the session token was refused: renew the temporary credentials"),
    "AuthFailure.UnauthorizedOperation": ("auth", "the key may not call this IAI action: grant it in CAM (see README, before the first enrollment)"),
    "UnauthorizedOperation": ("auth", "the key may not call this IAI action: grant it in CAM (see README, before the first enrollment)"),
    "IpInBlacklist": ("auth", "the cloud refuses this device's IP address (blacklist)"),
    "IpNotInWhitelist": ("auth", "the cloud refuses this device's IP address: add it to the key's IP whitelist"),
    "ResourceUnavailable.ChargeStatusException": ("in_arrears", "the Tencent Cloud account is in arrears: top it up"),
    "ResourceUnavailable.InArrears": ("in_arrears", "the Tencent Cloud account is in arrears: top it up"),
    "ResourceUnavailable.LowBalance": ("in_arrears", "the Tencent Cloud account's balance is too low: top it up"),
    "ResourcesSoldOut.ChargeStatusException": ("in_arrears", "the account's billing status does not allow IAI calls: check billing in the console"),
    "ResourceUnavailable.NotExist": ("not_activated", "face recognition is not activated for this account: activate IAI in the console"),
    "ResourceUnavailable.NotReady": ("not_activated", "face recognition is not activated for this account: activate IAI in the console"),
    "ResourceUnavailable.UnknownStatus": ("not_activated", "the IAI billing status of this account is unknown: check that IAI is activated"),
    "ResourceUnavailable.GetAuthInfoError": ("later", "the cloud could not read the account's authorisation: try again later"),
    "ResourceUnavailable.Delivering": ("later", "face recognition is still being activated for this account: try again later"),
    "ResourceUnavailable.Recover": ("later", "face recognition is being restored for this account: try again later"),
    "ResourceUnavailable.Freeze": ("suspended", "the Tencent Cloud account is frozen"),
    "ResourceUnavailable.StopUsing": ("suspended", "face recognition is suspended for this account"),
    "ResourceUnavailable": ("not_activated", "the IAI resource is unavailable for this account: check the console"),
    "UnsupportedRegion": ("region", "IAI is not offered in cloud.region: use e.g. ap-guangzhou"),
    # --- the endpoint and the request itself ---------------------------------------------------------------------
    "ActionOffline": ("config", "this IAI action is offline: update faceagent"),
    "InvalidAction": ("config", "the action is not supported by this endpoint: check cloud.endpoint and cloud.version"),
    "NoSuchProduct": ("config", "cloud.endpoint is not the IAI service: check it"),
    "NoSuchVersion": ("config", "the API version is not supported by this endpoint: check cloud.version"),
    "UnsupportedProtocol": ("config", "the endpoint refuses this protocol: use https://"),
    "UnsupportedOperation": ("config", "the operation is not supported: check cloud.endpoint and cloud.version"),
    "UnsupportedOperation.UnknowMethod": ("config", "the cloud does not know this method: check cloud.version"),
    "InvalidRequest": ("rejected", "the cloud refused the request as malformed"),
    "InvalidParameter": ("rejected", ""),
    "InvalidParameter.InvalidParameter": ("rejected", ""),
    "InvalidParameterValue": ("rejected", ""),
    "MissingParameter": ("rejected", ""),
    "MissingParameter.ErrorParameterEmpty": ("rejected", "a required field was empty"),
    "UnknownParameter": ("rejected", ""),
    "RequestSizeLimitExceeded": ("rejected", "the request is larger than 10 MB: send fewer or smaller images"),
    "ResponseSizeLimitExceeded": ("rejected", "the answer would be too large"),
    "DryRunOperation": ("rejected", "the request was a dry run"),
    "ResourceInUse": ("rejected", ""),
    "ResourceInsufficient": ("rejected", ""),
    "ResourceNotFound": ("rejected", ""),
    "LimitExceeded": ("rejected", "an account quota was exceeded: see the IAI console"),
    "LimitExceeded.ErrorFaceNumExceed": ("rejected", "too many faces in the image"),
    # --- throttling and the service's own failures ------------------------------------------------------------------
    "RequestLimitExceeded": ("rate", ""),
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": ("rate", ""),
    "RequestLimitExceeded.IPLimitExceeded": ("rate", ""),
    "RequestLimitExceeded.UinLimitExceeded": ("rate", ""),
    "FailedOperation.RequestLimitExceeded": ("rate", ""),
    "FailedOperation.ConflictOperation": ("conflict", ""),
    "FailedOperation.CreateFaceConcurrent": ("conflict", ""),
    "InternalError": ("server", ""),
    "InternalError.ServerError": ("server", ""),
    "ServiceUnavailable": ("server", ""),
    "FailedOperation.ServerError": ("server", ""),
    "FailedOperation.RequestTimeout": ("server", ""),
    "FailedOperation.RpcFail": ("server", ""),
    "FailedOperation.UnKnowError": ("server", ""),
    "FailedOperation": ("rejected", ""),
    # --- persons, faces and images ------------------------------------------------------------------------------
    "InvalidParameterValue.PersonIdNotExist": ("person_missing", "person {person} does not exist: create it first or send create_person"),
    "InvalidParameterValue.PersonFaceNumExceed": ("face_limit", "person {person} already has 5 faces: delete one first "
                                                  "(faceagent ctl delete --person-id {person} --face-id FACE_ID)"),
    "InvalidParameterValue.PersonIdAlreadyExist": ("person_exists", "person {person} already exists"),
    "InvalidParameterValue.NoFaceInPhoto": ("no_face", "the cloud found no face in the image"),
    "FailedOperation.ImageFacedetectFailed": ("no_face", "the cloud could not detect a face in the image"),
    "FailedOperation.LifePhotoDetectNoFaces": ("no_face", "the cloud found no complete face in the image"),
    "FailedOperation.FaceSizeTooSmall": ("too_small", "the face is too small for the cloud: move closer"),
    "FailedOperation.FaceQualityNotQualified": ("quality", "the face failed the cloud's quality control: better light, face the camera, hold still"),
    "FailedOperation.LifePhotoDetectFaces": ("rejected", "the cloud found several faces in the image"),
    "FailedOperation.LifePhotoDetectFake": ("rejected", "the cloud's liveness check refused the image"),
    "FailedOperation.LifePhotoSizeError": ("rejected", "the image is too large or too small for the cloud"),
    "FailedOperation.CompareFail": ("rejected", "the cloud could not compare the faces"),
    "FailedOperation.ImageDecodeFailed": ("rejected", "the cloud could not decode the image"),
    "FailedOperation.ImageDownloadError": ("rejected", "the cloud could not download the image URL"),
    "FailedOperation.ImageSizeExceed": ("rejected", "the image is too large for the cloud (5 MB in base64)"),
    "FailedOperation.ImageResolutionExceed": ("rejected", "the image resolution is too large for the cloud (4000 px JPEG, 2000 px others)"),
    "FailedOperation.ImageResolutionTooSmall": ("rejected", "the image's short side is under the cloud's 64 px"),
    "InvalidParameterValue.ImageEmpty": ("rejected", "no image was sent"),
    "InvalidParameterValue.ImageEmptyError": ("rejected", "the image sent was empty"),
    "InvalidParameterValue.UrlIllegal": ("rejected", "the image URL is not valid"),
    "InvalidParameterValue.UploadFaceNumExceed": ("rejected", "more than 4 images in one call"),
    "InvalidParameterValue.DeleteFaceNumExceed": ("rejected", "a person's last face cannot be deleted: delete the person instead"),
    "InvalidParameterValue.AccountFaceNumExceed": ("rejected", "the account's face quota is used up: delete faces or raise the quota"),
    "InvalidParameterValue.PersonIdIllegal": ("rejected", "person id {person} is not allowed: use letters, digits and -%@#&_"),
    "InvalidParameterValue.PersonIdTooLong": ("rejected", "person id {person} is longer than 64 bytes"),
    "InvalidParameterValue.PersonNameIllegal": ("rejected", "the person name is not allowed"),
    "InvalidParameterValue.PersonNameTooLong": ("rejected", "the person name is longer than 60 characters"),
    "InvalidParameterValue.PersonGenderIllegal": ("rejected", "gender must be 0, 1 or 2"),
    "InvalidParameterValue.PersonExistInGroup": ("rejected", "person {person} is already in group {group}"),
    "InvalidParameterValue.PersonExDescriptionInfosExceed": ("rejected", "more than 5 person description fields"),
    "InvalidParameterValue.PersonExDescriptionsNameIdentical": ("rejected", "person description fields must differ"),
    "InvalidParameterValue.PersonExDescriptionsNameIllegal": ("rejected", "a person description field name is not allowed"),
    "InvalidParameterValue.PersonExDescriptionsNameTooLong": ("rejected", "a person description field name is too long"),
    "InvalidParameterValue.FaceMatchThresholdIllegal": ("rejected", "face_match_threshold must be 0-100"),
    "InvalidParameterValue.QualityControlIllegal": ("rejected", "quality_control must be 0-4"),
    "InvalidParameterValue.UniquePersonControlIllegal": ("rejected", "UniquePersonControl must be 0-4"),
    "InvalidParameterValue.FaceModelVersionIllegal": ("rejected", "the face model version must be 2.0 or 3.0"),
    "InvalidParameterValue.UnsupportedGroupFaceModelVersion": ("rejected", "group {group} uses face model 2.0, which this action "
                                                               "does not support: upgrade the group"),
    "InvalidParameterValue.NoFaceInGroups": ("rejected", "the groups searched hold no face"),
    "InvalidParameterValue.SearchPersonsExceed": ("rejected", "too many persons asked for in a search"),
    "InvalidParameterValue.LimitExceed": ("rejected", "a page size above the cloud's limit was asked for"),
    "InvalidParameterValue.OffsetExceed": ("rejected", "a page offset above the cloud's limit was asked for"),
    "FailedOperation.SearchFacesExceed": ("rejected", "too many faces asked for in a search"),
    "FailedOperation.AcrossVersionsError": ("rejected", "the groups use different face model versions"),
    # --- groups ---------------------------------------------------------------------------------------------------
    "InvalidParameterValue.GroupIdNotExist": ("rejected", "group {group} does not exist: create it in the IAI console first"),
    "InvalidParameterValue.GroupIdNotExists": ("rejected", "group {group} does not exist: create it in the IAI console first"),
    "InvalidParameterValue.GroupIdAlreadyExist": ("rejected", "group {group} already exists"),
    "InvalidParameterValue.GroupIdIllegal": ("rejected", "group id {group} is not allowed: use letters, digits and -%@#&_"),
    "InvalidParameterValue.GroupIdTooLong": ("rejected", "group id {group} is longer than 64 characters"),
    "InvalidParameterValue.GroupIdsExceed": ("rejected", "more than 100 groups in one call"),
    "InvalidParameterValue.GroupNameAlreadyExist": ("rejected", "another group already has this name: group names are unique"),
    "InvalidParameterValue.GroupNameIllegal": ("rejected", "the group name is not allowed"),
    "InvalidParameterValue.GroupNameTooLong": ("rejected", "the group name is longer than 60 characters"),
    "InvalidParameterValue.GroupNumExceed": ("rejected", "the account's group quota is used up"),
    "InvalidParameterValue.GroupNumPerPersonExceed": ("rejected", "person {person} is already in 100 groups"),
    "InvalidParameterValue.GroupFaceNumExceed": ("rejected", "group {group} is full: use another group or raise its limit"),
    "InvalidParameterValue.GroupTagIllegal": ("rejected", "the group tag is not allowed"),
    "InvalidParameterValue.GroupTagTooLong": ("rejected", "the group tag is too long"),
    "InvalidParameterValue.GroupExDescriptionsExceed": ("rejected", "more than 5 group description fields"),
    "InvalidParameterValue.GroupExDescriptionsNameIdentical": ("rejected", "group description fields must differ"),
    "InvalidParameterValue.GroupExDescriptionsNameIllegal": ("rejected", "a group description field name is not allowed"),
    "InvalidParameterValue.GroupExDescriptionsNameTooLong": ("rejected", "a group description field name is too long"),
    "FailedOperation.DuplicatedGroupDescription": ("rejected", "group description fields must be unique within the group"),
    "FailedOperation.GroupInDeletedState": ("rejected", "group {group} is being deleted"),
    "FailedOperation.GroupPersonMapExist": ("rejected", "person {person} is already in group {group}"),
    "FailedOperation.GroupPersonMapNotExist": ("rejected", "person {person} is not in group {group}"),
    "FailedOperation.GroupCannotUpgrade": ("rejected", "group {group} cannot be upgraded now"),
    "FailedOperation.GroupLostFaces": ("rejected", "group {group} has lost face images: see the IAI console"),
    "FailedOperation.JobCannnotRollback": ("rejected", "the group upgrade cannot be rolled back"),
    "FailedOperation.UpgradeJobIdNotExist": ("rejected", "the group upgrade job does not exist"),
}

# When a code is missing from the table (a newer service), the nearest listed prefix decides.
PREFIX_KINDS = (
    ("AuthFailure", "auth"), ("RequestLimitExceeded", "rate"), ("ResourceUnavailable", "not_activated"),
    ("ResourcesSoldOut", "in_arrears"), ("InternalError", "server"), ("UnsupportedOperation", "config"),
)

# The account status a failed call says something about, by kind (published in the retained `base/state`).
ACCOUNT_STATUS = {"auth": "auth_failed", "token": "auth_failed", "in_arrears": "in_arrears", "not_activated": "not_activated",
                  "suspended": "suspended", "region": "region"}
