{{- define "palisade-gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "palisade-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "palisade-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "palisade-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "palisade-gateway.labels" -}}
{{ include "palisade-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: palisade
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "palisade-gateway.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "palisade-gateway.fullname" .) -}}
{{- end -}}

{{- define "palisade-gateway.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "palisade-gateway.fullname" .) -}}
{{- end -}}

{{/* repository@digest when a digest is set, repository:tag otherwise; never "latest". */}}
{{- define "palisade-gateway.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- $tag := $image.tag | default .Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag \"latest\" is refused: give a version tag or image.digest" -}}
{{- end -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}
