{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "aviso-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "aviso-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aviso-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aviso-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "aviso-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aviso-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aviso-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aviso-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding credential files, or empty when there are none. */}}
{{- define "aviso-bridge.secretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if .Values.credentials.data }}
{{- include "aviso-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the listener file, or empty. */}}
{{- define "aviso-bridge.listenersConfigMap" -}}
{{- if .Values.listenersConfigMap }}
{{- .Values.listenersConfigMap }}
{{- else if .Values.listenersFile }}
{{- printf "%s-listeners" (include "aviso-bridge.fullname" .) }}
{{- end }}
{{- end }}

{{/* Replicas, after the checks of validate. */}}
{{- define "aviso-bridge.replicas" -}}
{{- if eq .Values.checkpoint.store "file" }}1{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
Refuses combinations that cannot work, naming the value to change:
several replicas need standby and a store shared between pods; variables the
chart sets itself are not accepted in env.
*/}}
{{- define "aviso-bridge.validate" -}}
{{- $store := .Values.checkpoint.store }}
{{- if not (has $store (list "file" "nats-kv" "kafka" "none")) }}
{{- fail (printf "checkpoint.store %q: want file, nats-kv, kafka or none" $store) }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if not (has $store (list "nats-kv" "kafka")) }}
{{- fail (printf "replicaCount %d needs checkpoint.store nats-kv or kafka (the %s store is not shared between pods)" (int .Values.replicaCount) $store) }}
{{- end }}
{{- if not .Values.standby }}
{{- fail (printf "replicaCount %d needs standby: true (without it a second bridge on the same listener exits 1)" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
{{- if and .Values.standby (eq $store "none") }}
{{- fail "standby: true needs a checkpoint store (checkpoint.store none keeps no lease)" }}
{{- end }}
{{- range $k := list "CHECKPOINT_STORE" "CHECKPOINT_FILE" "CHECKPOINT_LEASE_TTL" "BRIDGE_STANDBY" "BRIDGE_SHUTDOWN_TIMEOUT" "BRIDGE_HTTP_ADDR" "BRIDGE_INSTANCE_ID" "AVISO_LISTENERS_FILE" "AVISO_EVENT_TYPE" "AVISO_IDENTIFIER" "AVISO_LISTENER_NAME" }}
{{- if hasKey $.Values.env $k }}
{{- fail (printf "env.%s is set by the chart: use the chart's value for it (see values.yaml)" $k) }}
{{- end }}
{{- end }}
{{- if or .Values.listenersFile .Values.listenersConfigMap }}
{{- range $k := list "CHECKPOINT_KEY" }}
{{- if hasKey $.Values.env $k }}
{{- fail (printf "env.%s cannot be set with a listener file (listenersFile, listenersConfigMap)" $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $var, $key := .Values.credentials.files }}
{{- if not (hasSuffix "_FILE" $var) }}
{{- fail (printf "credentials.files.%s: the variable must be one of the bridge's *_FILE variables" $var) }}
{{- end }}
{{- if hasKey $.Values.env (trimSuffix "_FILE" $var) }}
{{- fail (printf "env.%s and credentials.files.%s are both set: keep the secret in the file" (trimSuffix "_FILE" $var) $var) }}
{{- end }}
{{- if and (not $.Values.credentials.existingSecret) (not (hasKey $.Values.credentials.data $key)) }}
{{- fail (printf "credentials.files.%s names key %q, which credentials.data does not hold" $var $key) }}
{{- end }}
{{- end }}
{{- if and (not (or .Values.listenersFile .Values.listenersConfigMap)) (not .Values.watch.eventType) }}
{{- fail "watch.eventType is empty and there is no listener file (listenersFile, listenersConfigMap): nothing to watch" }}
{{- end }}
{{- if le (int .Values.terminationGraceExtraSeconds) 0 }}
{{- fail "terminationGraceExtraSeconds must be positive: the pod must outlive the bridge's drain and final commit" }}
{{- end }}
{{- end }}
