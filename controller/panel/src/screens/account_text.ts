// The accounts screen's words, in every language of the panel.
import { defineText } from "../i18n/text";

export const accountText = defineText({
  en: {
    newAccount: "New account", username: "Username", email: "Email (optional)", fullName: "Full name (optional)",
    password: "Password", role: "Role", anyRole: "Any role", anyStatus: "Any status", admin: "Administrator",
    manager: "Manager", viewer: "Viewer", user: "User", active: "Active", inactive: "Inactive", suspended: "Suspended",
    twoFactor: "2FA", twoFactorOn: "On", twoFactorOff: "Off", lastLogin: "Last login", searchAccounts: "Search accounts",
    searchHint: "Part of the username or email", welcome: "Email the account that it exists",
    editTitle: "Edit account", edit: "Edit", resetPassword: "Reset password", resetTitle: "Reset the password",
    newPassword: "New password", forceChange: "Must choose a new password at the next sign-in",
    sendEmail: "Tell the account by email", reset: "Reset", deleteTitle: "Delete this account?",
    deleteHelp: "Its sessions and API keys end now. This cannot be undone.", permissions: "Permissions",
    roleDefaults: "The role's default permissions", mustChange: "Must change password", locked: "Locked",
    noAccounts: "No accounts match.", saved: "Saved.", turnOff2fa: "Turn off 2FA (a lost phone)",
    resetDone: "The password was reset.", you: "you",
  },
  zh: {
    newAccount: "新建账户", username: "用户名", email: "电子邮箱（可选）", fullName: "全名（可选）",
    password: "密码", role: "角色", anyRole: "任意角色", anyStatus: "任意状态", admin: "管理员",
    manager: "经理", viewer: "只读用户", user: "普通用户", active: "启用", inactive: "未激活", suspended: "已停用",
    twoFactor: "两步验证", twoFactorOn: "已开启", twoFactorOff: "未开启", lastLogin: "最近登录", searchAccounts: "搜索账户",
    searchHint: "用户名或邮箱的一部分", welcome: "发送邮件告知账户已创建",
    editTitle: "编辑账户", edit: "编辑", resetPassword: "重置密码", resetTitle: "重置密码",
    newPassword: "新密码", forceChange: "下次登录时必须设置新密码",
    sendEmail: "通过邮件通知该账户", reset: "重置", deleteTitle: "删除此账户？",
    deleteHelp: "其会话和 API 密钥将立即失效。此操作无法撤销。", permissions: "权限",
    roleDefaults: "使用角色的默认权限", mustChange: "须修改密码", locked: "已锁定",
    noAccounts: "没有匹配的账户。", saved: "已保存。", turnOff2fa: "关闭两步验证（手机丢失时）",
    resetDone: "密码已重置。", you: "您",
  },
  ru: {
    newAccount: "Новая учётная запись", username: "Имя пользователя", email: "Эл. почта (необязательно)",
    fullName: "Полное имя (необязательно)", password: "Пароль", role: "Роль", anyRole: "Любая роль",
    anyStatus: "Любой статус", admin: "Администратор", manager: "Менеджер", viewer: "Наблюдатель", user: "Пользователь",
    active: "Активна", inactive: "Неактивна", suspended: "Заблокирована", twoFactor: "Двухфакторная защита",
    twoFactorOn: "Вкл.", twoFactorOff: "Выкл.", lastLogin: "Последний вход", searchAccounts: "Поиск учётных записей",
    searchHint: "Часть имени пользователя или адреса почты", welcome: "Сообщить по почте о создании",
    editTitle: "Изменить учётную запись", edit: "Изменить", resetPassword: "Сбросить пароль", resetTitle: "Сброс пароля",
    newPassword: "Новый пароль", forceChange: "Сменить пароль при следующем входе",
    sendEmail: "Сообщить по почте", reset: "Сбросить", deleteTitle: "Удалить эту учётную запись?",
    deleteHelp: "Её сеансы и API-ключи прекратят действие сразу. Это действие нельзя отменить.", permissions: "Права",
    roleDefaults: "Права роли по умолчанию", mustChange: "Должен сменить пароль", locked: "Заблокирована на время",
    noAccounts: "Нет подходящих учётных записей.", saved: "Сохранено.", turnOff2fa: "Отключить двухфакторную защиту (потерян телефон)",
    resetDone: "Пароль сброшен.", you: "вы",
  },
});

/** Every permission an account can be narrowed to (controller/permissions.py), in the order they are listed. */
export const PERMISSIONS = [
  "nodes.view", "nodes.edit", "logs.view", "subscribers.view", "subscribers.edit", "wireguard.view", "wireguard.edit",
  "nodepass.view", "nodepass.edit", "ipv6.view", "ipv6.edit", "operations.view", "system.view", "system.edit",
  "keys.manage", "keys.manage_all", "users.view", "users.manage",
] as const;
