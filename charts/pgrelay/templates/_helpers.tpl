{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "pgrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name contains it.
Truncated to 56 characters so that component suffixes ("-relay", "-edge", "-redis") still fit in 63.
*/}}
{{- define "pgrelay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "pgrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Namespace of every object: the release namespace.
*/}}
{{- define "pgrelay.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/*
Names of the components' objects.
*/}}
{{- define "pgrelay.relay.fullname" -}}
{{- printf "%s-relay" (include "pgrelay.fullname" .) }}
{{- end }}
{{- define "pgrelay.edge.fullname" -}}
{{- printf "%s-edge" (include "pgrelay.fullname" .) }}
{{- end }}
{{- define "pgrelay.redis.fullname" -}}
{{- printf "%s-redis" (include "pgrelay.fullname" .) }}
{{- end }}
{{- define "pgrelay.postgres.fullname" -}}
{{- printf "%s-postgres" (include "pgrelay.fullname" .) }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "root" $ "component" "edge").
*/}}
{{- define "pgrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgrelay.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Standard labels of one component. Call with (dict "root" $ "component" "edge").
*/}}
{{- define "pgrelay.labels" -}}
helm.sh/chart: {{ include "pgrelay.chart" .root }}
{{ include "pgrelay.selectorLabels" . }}
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: pgrelay
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Image reference: repository, then @digest, or :tag (default: the chart's appVersion).
Call with (dict "root" $ "image" .Values.edge.image).
*/}}
{{- define "pgrelay.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the relay and edge pods.
*/}}
{{- define "pgrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgrelay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret holding the connection URLs: the user's existingSecret, or the one the chart creates.
*/}}
{{- define "pgrelay.secretName" -}}
{{- .Values.existingSecret.name | default (include "pgrelay.fullname" .) }}
{{- end }}

{{- define "pgrelay.databaseURLKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.databaseURLKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "pgrelay.redisURLKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.redisURLKey }}{{ else }}redis-url{{ end }}
{{- end }}

{{/*
The database URL the chart stores in its Secret: the demo PostgreSQL's, or database.url.
*/}}
{{- define "pgrelay.databaseURL" -}}
{{- if .Values.demoPostgres.enabled }}
{{- printf "postgres://postgres:%s@%s:5432/postgres?sslmode=disable" .Values.demoPostgres.password (include "pgrelay.postgres.fullname" .) }}
{{- else }}
{{- .Values.database.url }}
{{- end }}
{{- end }}

{{/*
One env entry for a Redis URL variable (call with (dict "root" $ "name" "EDGE_REDIS_URL")):
the bundled Redis's address in plain text (it holds no credential), else a secretKeyRef.
*/}}
{{- define "pgrelay.redisURLEnv" -}}
- name: {{ .name }}
{{- if .root.Values.redis.enabled }}
  value: {{ printf "redis://%s:%d/0" (include "pgrelay.redis.fullname" .root) (int .root.Values.redis.port) | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "pgrelay.secretName" .root }}
      key: {{ include "pgrelay.redisURLKey" .root }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints with the component's selector labels filled in where an entry has no labelSelector.
Call with (dict "root" $ "component" "edge" "constraints" .Values.edge.topologySpreadConstraints).
*/}}
{{- define "pgrelay.topologySpreadConstraints" -}}
{{- $selector := include "pgrelay.selectorLabels" . | fromYaml }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
- {{ toYaml $c | indent 2 | trim }}
{{- end }}
{{- end }}

{{/*
checksum/config: changes when the Secret the chart creates changes, so pods restart with the new URLs.
*/}}
{{- define "pgrelay.configChecksum" -}}
{{- include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/*
Seconds in a Go duration written as whole seconds or minutes ("10s", "2m"); -1 for any other form.
*/}}
{{- define "pgrelay.durationSeconds" -}}
{{- $d := toString . }}
{{- if regexMatch "^[0-9]+s$" $d }}
{{- trimSuffix "s" $d | atoi }}
{{- else if regexMatch "^[0-9]+m$" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else }}
{{- -1 }}
{{- end }}
{{- end }}

{{/*
Checks across values that the schema cannot express. Fails the render with a message naming the values.
*/}}
{{- define "pgrelay.validate" -}}
{{- if and .Values.existingSecret.name .Values.demoPostgres.enabled }}
{{- fail "demoPostgres.enabled and existingSecret.name cannot both be set: the demo database's URL lives in the chart's own Secret" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.existingSecret.name) (not .Values.externalRedis.url) }}
{{- fail "redis.enabled is false: set externalRedis.url (or existingSecret.name) to your Redis" }}
{{- end }}
{{- $drain := include "pgrelay.durationSeconds" .Values.edge.config.drainTimeout | atoi }}
{{- if and (ge $drain 0) (le (int .Values.edge.terminationGracePeriodSeconds) (add $drain 2)) }}
{{- fail (printf "edge.terminationGracePeriodSeconds (%d) must exceed edge.config.drainTimeout (%s) by more than 2 seconds, or Kubernetes kills edges mid-drain" (int .Values.edge.terminationGracePeriodSeconds) .Values.edge.config.drainTimeout) }}
{{- end }}
{{- if eq .Values.edge.auth.mode "jwt" }}
{{- $k := include "pgrelay.edgeAuthKeys" . | fromYaml }}
{{- if not (or $k.secret $k.publicKeys $k.jwks) }}
{{- fail "edge.auth.mode is jwt: set edge.auth.jwt.secret, publicKeys or jwks (or edge.auth.jwt.existingSecret with one of its keys)" }}
{{- end }}
{{- end }}
{{- with .Values.edge.autoscaling }}
{{- if and .enabled (gt (int .minReplicas) (int .maxReplicas)) }}
{{- fail "edge.autoscaling.minReplicas must not exceed edge.autoscaling.maxReplicas" }}
{{- end }}
{{- if and .enabled (not .targetCPUUtilizationPercentage) (not .targetMemoryUtilizationPercentage) }}
{{- fail "edge.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Edge authentication: the Secret holding the verification keys, the directory it is mounted at,
and whether a key file is used ("true" or "").
*/}}
{{- define "pgrelay.edgeAuthSecretName" -}}
{{- .Values.edge.auth.jwt.existingSecret.name | default (printf "%s-edge-auth" (include "pgrelay.fullname" .)) }}
{{- end }}

{{- define "pgrelay.jwtDir" -}}
/etc/pgrelay/jwt
{{- end }}

{{/* The Secret keys of the three key sources ("" when unused), as a dict. */}}
{{- define "pgrelay.edgeAuthKeys" -}}
{{- $j := .Values.edge.auth.jwt }}
{{- if ne .Values.edge.auth.mode "jwt" }}
{{- dict "secret" "" "publicKeys" "" "jwks" "" | toYaml }}
{{- else if $j.existingSecret.name }}
{{- dict "secret" $j.existingSecret.secretKey "publicKeys" $j.existingSecret.publicKeysKey "jwks" $j.existingSecret.jwksKey | toYaml }}
{{- else }}
{{- dict "secret" (ternary "jwt-secret" "" (not (empty $j.secret))) "publicKeys" (ternary "public-keys.pem" "" (not (empty $j.publicKeys))) "jwks" (ternary "jwks.json" "" (not (empty $j.jwks))) | toYaml }}
{{- end }}
{{- end }}

{{- define "pgrelay.edgeAuthFiles" -}}
{{- $k := include "pgrelay.edgeAuthKeys" . | fromYaml }}
{{- if or $k.publicKeys $k.jwks }}true{{ end }}
{{- end }}

{{/*
EDGE_AUTH and the EDGE_JWT_* variables. The secret comes from a secretKeyRef, key files from the
mounted Secret; variables for unused key sources are left out (the edge reads them as empty).
*/}}
{{- define "pgrelay.edgeAuthEnv" -}}
{{- $j := .Values.edge.auth.jwt }}
{{- $k := include "pgrelay.edgeAuthKeys" . | fromYaml }}
- name: EDGE_AUTH
  value: {{ .Values.edge.auth.mode | quote }}
{{- if $k.secret }}
- name: EDGE_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "pgrelay.edgeAuthSecretName" . }}
      key: {{ $k.secret }}
{{- end }}
{{- if $k.publicKeys }}
- name: EDGE_JWT_PUBLIC_KEY_FILE
  value: {{ printf "%s/%s" (include "pgrelay.jwtDir" .) $k.publicKeys | quote }}
{{- end }}
{{- if $k.jwks }}
- name: EDGE_JWT_JWKS_FILE
  value: {{ printf "%s/%s" (include "pgrelay.jwtDir" .) $k.jwks | quote }}
{{- end }}
- name: EDGE_JWT_ALGORITHMS
  value: {{ join "," $j.algorithms | quote }}
- name: EDGE_JWT_ISSUER
  value: {{ $j.issuer | quote }}
- name: EDGE_JWT_AUDIENCE
  value: {{ $j.audience | quote }}
- name: EDGE_JWT_LEEWAY
  value: {{ $j.leeway | quote }}
- name: EDGE_JWT_COOKIE
  value: {{ $j.cookie | quote }}
- name: EDGE_JWT_QUERY_TOKEN
  value: {{ $j.queryToken | toString | quote }}
{{- end }}
