// English strings of the widget: `loader` for widget.js (kept tiny: it ships in every page),
// `frame` for the chat frame. Add a language by copying this file and registering it in
// frame/i18n.ts and widget/index.ts.
export const loader = {
  open: "Open chat",
  close: "Close chat",
  blocked: "This chat isn't available on this website.",
};

export const frame = {
  title: "Chat",
  close: "Close chat",
  connecting: "Connecting…",
  online: "Online",
  reconnecting: "Reconnecting…",
  offline: "Offline. Your messages will be sent when you're back online.",
  placeholder: "Type a message…",
  send: "Send",
  queued: "Waiting for connection",
  sending: "Sending…",
  sent: "Sent",
  failed: "Not sent",
  retry: "Retry",
  typing: "Typing…",
  sources: "Sources",
  you: "You",
  assistant: "Assistant",
  operator: "Agent",
  networkError: "Network problem. We'll keep trying.",
  rateLimited: "Too many messages. You can send again in {time}.",
  serverError: "Something went wrong on our side. Please try again in a moment.",
  invalidInput: "This message can't be sent. Please shorten or change it.",
  originNotAllowed: "This chat isn't available on this website.",
  identityInvalid: "We couldn't verify your account. You're chatting as a guest.",
  unlock: "Unlock",
  unlocked: "Unlocked",
  email: "Email",
  name: "Name",
  phone: "Phone",
  submit: "Send",
  cancel: "Cancel",
  getAccess: "Get access",
  leadPrompt: "Leave your email and a person will get back to you.",
  leadThanks: "Thanks! We'll be in touch.",
  invalidEmail: "Please enter a valid email address.",
  required: "Please fill in this field.",
};

export type FrameStrings = typeof frame;
export type LoaderStrings = typeof loader;
