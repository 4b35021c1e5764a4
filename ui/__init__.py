"""The web page's parts, for `app.build_demo`: the layout (`layout`, `controls`), what each event does
(`events`), the named API (`api`) and the two Gradio patches, each in its own module with its version check
(`patch_api_arguments`, `patch_quiet_queue`). Imports gradio and `steering.service` (and the config's names),
never the model libraries."""
