// The quiz editor: a form (questions, choices, the right one marked) or a
// pasted JSON body of POST /api/quiz/quizzes. Limits follow contracts/http.py
// (QuizIn, QuestionIn) so most mistakes are caught before the request.

import { $, h } from "./dom.js";

const MAX_CHOICES = 6;
const MIN_CHOICES = 2;
const MAX_QUESTIONS = 100;

const EXAMPLE = {
  title: "Capitals",
  public: false,
  questions: [
    { text: "Capital of France?", choices: ["Lyon", "Paris", "Nice", "Lille"], answer: 1, time_limit_s: 20 },
    { text: "Capital of Japan?", choices: ["Osaka", "Kyoto", "Tokyo"], answer: 2, time_limit_s: 20 },
  ],
};

export class QuizInputError extends Error {
  /**
   * A validation message plus the field to focus.
   * @param {string} message
   */
  constructor(message, field = null) {
    super(message);
    this.field = field;
  }
}

let uid = 0;
const nextId = (/** @type {string} */ prefix) => `${prefix}-${++uid}`;

/**
 * Build the editor inside `form`. `onSubmit(quizIn)` gets a valid QuizIn body
 * and returns a promise; the editor shows its errors in `[data-error]`.
 * @param {any} form
 * @param {(body: any) => Promise<unknown>} onSubmit
 */
export function mountQuizEditor(form, onSubmit) {
  const titleId = nextId("quiz-title");
  const publicId = nextId("quiz-public");
  const jsonId = nextId("quiz-json");
  const modeName = nextId("quiz-mode");
  const questions = h("div", { class: "q-list" });
  const addQuestion = h("button", { type: "button", class: "btn", "data-add-question": true }, "Add question");
  const jsonArea = h("textarea", {
    id: jsonId,
    name: "json",
    rows: 14,
    spellcheck: "false",
    class: "mono",
    placeholder: JSON.stringify(EXAMPLE, null, 2),
  });
  const formPart = h("div", { class: "stack", "data-part": "form" }, questions, h("div", { class: "row" }, addQuestion));
  const jsonPart = h(
    "div",
    { class: "stack", "data-part": "json", hidden: true },
    h("label", { for: jsonId }, "Quiz as JSON ", h("span", { class: "muted small" }, "(the body of POST /api/quiz/quizzes)")),
    jsonArea,
  );
  const modeRadio = (/** @type {string} */ value, /** @type {string} */ label, /** @type {boolean} */ checked) => {
    const id = nextId("mode");
    return h(
      "span",
      { class: "radio" },
      h("input", { type: "radio", id, name: modeName, value, checked }),
      h("label", { for: id }, label),
    );
  };
  form.replaceChildren(
    h("label", { for: titleId }, "Title"),
    h("input", { id: titleId, name: "title", maxlength: 200, required: true, autocomplete: "off" }),
    h(
      "span",
      { class: "checkbox" },
      h("input", { type: "checkbox", id: publicId, name: "public" }),
      h("label", { for: publicId }, "Public: anyone signed in can play it at their own pace"),
    ),
    h(
      "fieldset",
      { class: "modes" },
      h("legend", {}, "Write the questions"),
      modeRadio("form", "In a form", true),
      modeRadio("json", "Paste JSON", false),
    ),
    formPart,
    jsonPart,
    h("p", { class: "error", role: "alert", "data-error": true }),
    h("button", { type: "submit", class: "btn primary big" }, "Create quiz"),
  );

  const mode = () => form.querySelector(`input[name="${modeName}"]:checked`).value;
  form.addEventListener("change", (/** @type {any} */ e) => {
    if (e.target.name !== modeName) return;
    formPart.hidden = mode() !== "form";
    jsonPart.hidden = mode() !== "json";
  });
  addQuestion.addEventListener("click", () => {
    if (questions.children.length >= MAX_QUESTIONS) return;
    const q = questionEditor(questions);
    renumber(questions);
    q.querySelector("textarea").focus();
  });
  questionEditor(questions);
  renumber(questions);

  form.addEventListener("submit", async (/** @type {any} */ e) => {
    e.preventDefault();
    const error = $("[data-error]", form);
    error.textContent = "";
    let body;
    try {
      body = mode() === "json" ? readJson(form, jsonArea) : readForm(form, questions);
    } catch (err) {
      error.textContent = err.message;
      err.field?.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await onSubmit(body);
      reset();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });

  function reset() {
    form.elements.title.value = "";
    form.elements.public.checked = false;
    jsonArea.value = "";
    questions.replaceChildren();
    questionEditor(questions);
    renumber(questions);
  }
}

/**
 * @param {any} list
 */
function questionEditor(list) {
  const textId = nextId("q-text");
  const timeId = nextId("q-time");
  const pointsId = nextId("q-points");
  const right = nextId("q-right");
  const choices = h("div", { class: "choice-edit-list" });
  const addChoice = h("button", { type: "button", class: "btn small", "data-add-choice": true }, "Add choice");
  const remove = h("button", { type: "button", class: "btn link small", "data-remove-question": true }, "Remove question");
  const fieldset = h(
    "fieldset",
    { class: "q-edit", dataset: { right } },
    h("legend", {}, "Question"),
    h("label", { for: textId }, "Question text"),
    h("textarea", { id: textId, rows: 2, maxlength: 500, "data-q-text": true }),
    h("p", { class: "muted small", id: `${right}-hint` }, "Type the choices and mark the right one."),
    choices,
    h(
      "div",
      { class: "row" },
      addChoice,
      h(
        "span",
        { class: "inline-field" },
        h("label", { for: timeId }, "Seconds"),
        h("input", { id: timeId, type: "number", min: 5, max: 120, value: 20, inputmode: "numeric", "data-q-time": true }),
      ),
      h(
        "span",
        { class: "inline-field" },
        h("label", { for: pointsId }, "Points"),
        h("input", { id: pointsId, type: "number", min: 0, max: 10000, step: 100, value: 1000, inputmode: "numeric", "data-q-points": true }),
      ),
      remove,
    ),
  );
  addChoice.addEventListener("click", () => {
    if (choices.children.length >= MAX_CHOICES) return;
    choiceRow(choices, right).querySelector("input[type=text]").focus();
    renumberChoices(fieldset);
  });
  remove.addEventListener("click", () => {
    if (list.children.length <= 1) return;
    fieldset.remove();
    renumber(list);
    list.querySelector("textarea")?.focus();
  });
  for (let i = 0; i < 4; i++) choiceRow(choices, right);
  list.append(fieldset);
  renumberChoices(fieldset);
  return fieldset;
}

/**
 * @param {any} choices
 * @param {string} right
 */
function choiceRow(choices, right) {
  const textId = nextId("choice");
  const radioId = nextId("right");
  const row = h(
    "div",
    { class: "choice-row" },
    h("input", { type: "radio", id: radioId, name: right, class: "right-radio" }),
    h("label", { for: radioId, class: "right-label" }, "Right"),
    h("label", { for: textId, class: "sr-only", "data-choice-label": true }, "Choice"),
    h("input", { type: "text", id: textId, maxlength: 200, autocomplete: "off", "data-choice": true }),
    h("button", { type: "button", class: "btn link small", "data-remove-choice": true }, "Remove"),
  );
  row.querySelector("[data-remove-choice]").addEventListener("click", () => {
    const fieldset = row.closest("fieldset");
    if (choices.children.length <= MIN_CHOICES) return;
    row.remove();
    renumberChoices(fieldset);
  });
  choices.append(row);
  return row;
}

/**
 * @param {any} list
 */
function renumber(list) {
  [...list.children].forEach((fs, i) => {
    fs.querySelector("legend").textContent = `Question ${i + 1}`;
    fs.querySelector("[data-remove-question]").hidden = list.children.length <= 1;
  });
}

/**
 * @param {any} fieldset
 */
function renumberChoices(fieldset) {
  const rows = [...fieldset.querySelectorAll(".choice-row")];
  rows.forEach((row, i) => {
    row.querySelector("[data-choice-label]").textContent = `Choice ${i + 1}`;
    row.querySelector("[data-choice]").placeholder = `Choice ${i + 1}`;
    row.querySelector(".right-radio").setAttribute("aria-label", `Choice ${i + 1} is the right answer`);
    row.querySelector("[data-remove-choice]").setAttribute("aria-label", `Remove choice ${i + 1}`);
    row.querySelector("[data-remove-choice]").hidden = rows.length <= MIN_CHOICES;
  });
  fieldset.querySelector("[data-add-choice]").hidden = rows.length >= MAX_CHOICES;
}

/**
 * @param {any} form
 */
function readTitle(form) {
  const title = form.elements.title.value.trim();
  if (!title) throw new QuizInputError("Give the quiz a title.", form.elements.title);
  return title;
}

/**
 * @param {any} form
 * @param {any} list
 */
function readForm(form, list) {
  const title = readTitle(form);
  const questions = [...list.children].map((fs, qi) => {
    const n = qi + 1;
    const text = fs.querySelector("[data-q-text]");
    if (!text.value.trim()) throw new QuizInputError(`Question ${n}: write the question.`, text);
    const rows = [...fs.querySelectorAll(".choice-row")];
    const filled = rows.filter((r) => r.querySelector("[data-choice]").value.trim());
    if (filled.length < MIN_CHOICES)
      throw new QuizInputError(`Question ${n}: give at least two choices.`, rows[filled.length]?.querySelector("[data-choice]"));
    const answer = filled.findIndex((r) => r.querySelector(".right-radio").checked);
    if (answer < 0) throw new QuizInputError(`Question ${n}: mark the right answer.`, filled[0].querySelector(".right-radio"));
    const time = fs.querySelector("[data-q-time]");
    const points = fs.querySelector("[data-q-points]");
    const timeLimit = Number(time.value);
    if (!Number.isInteger(timeLimit) || timeLimit < 5 || timeLimit > 120)
      throw new QuizInputError(`Question ${n}: seconds must be a whole number from 5 to 120.`, time);
    const pts = Number(points.value);
    if (!Number.isInteger(pts) || pts < 0 || pts > 10000)
      throw new QuizInputError(`Question ${n}: points must be a whole number from 0 to 10000.`, points);
    return {
      text: text.value.trim(),
      choices: filled.map((r) => r.querySelector("[data-choice]").value.trim()),
      answer,
      time_limit_s: timeLimit,
      points: pts,
    };
  });
  return { title, public: form.elements.public.checked, questions };
}

/**
 * @param {any} form
 * @param {any} area
 */
function readJson(form, area) {
  let body;
  try {
    body = JSON.parse(area.value);
  } catch (err) {
    throw new QuizInputError(`The JSON does not parse: ${err.message}`, area);
  }
  if (!body || typeof body !== "object" || Array.isArray(body))
    throw new QuizInputError("The JSON must be an object with title and questions.", area);
  if (!body.title) body.title = readTitle(form);
  if (body.public === undefined) body.public = form.elements.public.checked;
  if (!Array.isArray(body.questions) || !body.questions.length)
    throw new QuizInputError("The JSON needs a non-empty \"questions\" list.", area);
  body.questions.forEach((/** @type {any} */ q, /** @type {number} */ i) => {
    if (!q || !Array.isArray(q.choices) || q.choices.length < MIN_CHOICES || q.choices.length > MAX_CHOICES)
      throw new QuizInputError(`Question ${i + 1}: give 2 to 6 choices.`, area);
    if (!Number.isInteger(q.answer) || q.answer < 0 || q.answer >= q.choices.length)
      throw new QuizInputError(`Question ${i + 1}: "answer" must be the index of the right choice (0 = first).`, area);
  });
  return body;
}
