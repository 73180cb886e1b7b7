// The dashboard's entry point: global styles, the router, and the root component.
import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";
import { startRouter } from "./lib/router.svelte";

startRouter();
mount(App, { target: document.getElementById("app") as HTMLElement });
