{{/* Names and labels shared by the templates. */}}
{{- define "cloister-router.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cloister-router.postgresql" -}}
{{- printf "%s-postgresql" (include "cloister-router.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cloister-router.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cloister-router.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: router
{{- end -}}

{{- define "cloister-router.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: postgresql
{{- end -}}

{{/* Whether the chart's own Secret has anything to hold. */}}
{{- define "cloister-router.ownSecret" -}}
{{- if or (and (not .Values.joinTokens.existingSecret) .Values.joinTokens.tokens) (and (eq .Values.database.type "external") (not .Values.database.external.existingSecret)) (and .Values.chain.rpcUrl (not .Values.chain.settlementKey.existingSecret)) -}}
true
{{- end -}}
{{- end -}}

{{/*
Refuses values that cannot work, with a message that says what to change.
Included by the router Deployment, so every render runs it.
*/}}
{{- define "cloister-router.validate" -}}
{{- if not .Values.policy -}}
{{- fail "policy is required: set it to the attestation policy (TOML, see docs/attestation-policy.md), e.g. --set-file policy=policy.toml; the router refuses to start without one" -}}
{{- end -}}
{{- $type := .Values.database.type -}}
{{- if not (has $type (list "postgresql" "external" "sqlite")) -}}
{{- fail (printf "database.type must be postgresql, external or sqlite, not %q" $type) -}}
{{- end -}}
{{- if and (eq $type "sqlite") (ne (int .Values.replicaCount) 1) -}}
{{- fail (printf "database.type=sqlite keeps the ledger in one file that only one router may use: set replicaCount=1 (it is %d), or use PostgreSQL (database.type=postgresql or external) to run several replicas" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount must be at least 1" -}}
{{- end -}}
{{- if eq $type "external" -}}
{{- if not (or .Values.database.external.existingSecret .Values.database.external.url) -}}
{{- fail "database.type=external needs database.external.existingSecret or database.external.url" -}}
{{- end -}}
{{- if and .Values.database.external.url (not (regexMatch "^postgres(ql)?://" .Values.database.external.url)) -}}
{{- fail "database.external.url must be a postgres:// URL (several replicas need PostgreSQL)" -}}
{{- end -}}
{{- end -}}
{{- range .Values.joinTokens.tokens -}}
{{- if lt (len .) 16 -}}
{{- fail "joinTokens.tokens: every join token must be at least 16 characters" -}}
{{- end -}}
{{- if contains "," . -}}
{{- fail "joinTokens.tokens: a join token cannot contain a comma (CLOISTER_JOIN_TOKENS is comma-separated)" -}}
{{- end -}}
{{- end -}}
{{- if .Values.chain.rpcUrl -}}
{{- if not .Values.chain.deployment -}}
{{- fail "chain.rpcUrl needs chain.deployment (the JSON file from `cloister chain deploy`)" -}}
{{- end -}}
{{- if not (or .Values.chain.settlementKey.existingSecret .Values.chain.settlementKey.value) -}}
{{- fail "chain.rpcUrl needs chain.settlementKey.existingSecret or chain.settlementKey.value" -}}
{{- end -}}
{{- end -}}
{{- end -}}
