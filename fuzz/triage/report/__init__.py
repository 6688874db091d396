"""The morning after a campaign: `triage draft` (an upstream bug report in
Markdown) and `triage report` (static HTML pages to review the buckets).

`facts` gathers what both show about a bucket, `draft` and `site` render it
through the Jinja templates in templates/, `plots` draws the overview's
charts as inline SVG."""
